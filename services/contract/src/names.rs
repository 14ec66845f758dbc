//! Names of streams, subjects, consumers and KV buckets.
//!
//! Inspect them with the `nats` CLI, e.g. `nats stream info SIGN_REQUESTS` or
//! `nats kv get sign_results <message-key>`.

/// Stream holding one sign request per accepted caller (work-queue retention).
pub const REQUESTS_STREAM: &str = "SIGN_REQUESTS";
/// Subject the api publishes sign requests to.
pub const REQUESTS_SUBJECT: &str = "sign.requests";
/// Durable consumer through which signers take sign requests.
pub const SIGNER_CONSUMER: &str = "signer";

/// Stream holding one outcome event per job, consumed by the notifier.
pub const EVENTS_STREAM: &str = "SIGN_EVENTS";
/// Subject of job outcome events (`signature.completed` / `signature.failed`).
pub const EVENTS_SUBJECT: &str = "sign.events";
/// Durable consumer through which the notifier takes outcome events.
pub const NOTIFIER_CONSUMER: &str = "notifier";

/// Stream holding the jobs waiting for each pending message, one message per
/// job on `sign.waiting.<message-key>`: a join appends, whatever the number
/// already waiting, and finishing a message purges its subject.
pub const WAITING_STREAM: &str = "SIGN_WAITING";
/// Prefix of the waiting jobs' subjects (`sign.waiting.<message-key>`).
pub const WAITING_SUBJECT: &str = "sign.waiting";
/// The waiting stream's subjects.
pub const WAITING_SUBJECTS: &str = "sign.waiting.>";

/// Stream keeping webhook deliveries whose retry schedule ran out.
pub const DEAD_LETTER_STREAM: &str = "WEBHOOK_DEAD_LETTERS";
/// Prefix of dead-lettered deliveries' subjects: each is published on
/// `webhooks.dead.<job_id>`, so an operator can look one up by job id
/// (`nats stream get WEBHOOK_DEAD_LETTERS -S webhooks.dead.<job_id>`).
pub const DEAD_LETTER_SUBJECT: &str = "webhooks.dead";
/// The dead-letter stream's subjects: every `webhooks.dead.<job_id>`.
pub const DEAD_LETTER_SUBJECTS: &str = "webhooks.dead.>";
/// Operators redrive dead letters by request/reply on this subject
/// (`nats req webhooks.redrive <job-id>` or `… all`); the notifier answers.
pub const REDRIVE_SUBJECT: &str = "webhooks.redrive";

/// Stream of due webhook deliveries: the notifier's retry index. A delivery
/// that must wait (for its next attempt, or for the api's reply) is a
/// schedule on `webhooks.retry.at.<job_id>` (JetStream message schedules,
/// one per job: a newer one replaces it); when it is due, the server
/// publishes it on `webhooks.retry.due.<job_id>`, where the notifier takes
/// it. Waiting deliveries hold no consumer's capacity.
pub const RETRY_STREAM: &str = "WEBHOOK_RETRIES";
/// Prefix of the schedules' subjects (`webhooks.retry.at.<job_id>`).
pub const RETRY_AT_SUBJECT: &str = "webhooks.retry.at";
/// Prefix of due deliveries' subjects (`webhooks.retry.due.<job_id>`).
pub const RETRY_DUE_SUBJECT: &str = "webhooks.retry.due";
/// The retry stream's subjects.
pub const RETRY_SUBJECTS: &str = "webhooks.retry.>";
/// The due deliveries the notifier consumes.
pub const RETRY_DUE_SUBJECTS: &str = "webhooks.retry.due.>";
/// Durable consumer through which the notifier takes due deliveries.
pub const RETRY_CONSUMER: &str = "notifier-retries";
/// Request/reply: every notifier replica answers with its part of the status
/// page ([`crate::notifier_answers::WebhookStatusV1`]); the body is empty.
pub const WEBHOOK_STATUS_SUBJECT: &str = "webhooks.ask.status";

/// KV bucket: job id -> [`crate::records::JobRecord`].
pub const JOBS_BUCKET: &str = "sign_jobs";
/// KV bucket: message key -> [`crate::records::ResultRecord`] (signature cache).
pub const RESULTS_BUCKET: &str = "sign_results";
/// KV bucket: message key -> [`crate::records::WorkItem`] (messages still to sign).
pub const WORK_BUCKET: &str = "sign_work";
/// KV bucket: [`LIMITER_KEY`] -> [`crate::records::LimiterState`].
pub const LIMITER_BUCKET: &str = "upstream_limiter";
/// The single key of the limiter bucket: one budget shared by all replicas.
pub const LIMITER_KEY: &str = "calls";
/// Key, in the limiter bucket, of [`crate::records::RecentCalls`]: the last
/// upstream calls and their outcomes, for the status page.
pub const RECENT_CALLS_KEY: &str = "recent";
/// KV bucket: job id -> [`crate::records::DeliveryRecord`].
pub const DELIVERIES_BUCKET: &str = "webhook_deliveries";

/// Request/reply: "what can a caller of this message expect?"
/// ([`crate::signer_answers::BacklogQuestionV1`]), answered by a signer.
pub const BACKLOG_SUBJECT: &str = "sign.ask.backlog";
/// Request/reply: the signer's part of the status page
/// ([`crate::signer_answers::SignerStatusV1`]); the request body is empty.
pub const STATUS_SUBJECT: &str = "sign.ask.status";
/// Request/reply: the signer asks an api replica to rewrite the records of
/// jobs still pending ([`crate::job_keeping`]), in queue group
/// [`API_ANSWERS_GROUP`].
pub const KEEP_JOBS_SUBJECT: &str = "sign.jobs.keep";
/// Queue group the api replicas answer in: one answer per request.
pub const API_ANSWERS_GROUP: &str = "api";
/// Queue group the signer replicas answer in: one answer per question.
pub const SIGNER_ANSWERS_GROUP: &str = "signer";
