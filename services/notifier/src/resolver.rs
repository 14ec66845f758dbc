//! reqwest's DNS resolver, replaced by one that only returns vetted addresses.
//!
//! reqwest connects to whatever the resolver returns, so checking here (and
//! not in a separate lookup before the request) means the address checked is
//! the address dialled: DNS rebinding cannot slip a private address in
//! between. IP-literal hosts never reach a resolver; the caller checks those
//! with [`egress_policy::check_url`] before each attempt.

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::sync::Arc;

/// Resolves webhook hosts through [`egress_policy::resolve_allowed`].
#[derive(Debug, Clone)]
pub struct EgressResolver {
    allowed: Arc<[IpNet]>,
}

impl EgressResolver {
    /// A resolver letting through public addresses and those in `allowed`.
    pub fn new(allowed: Arc<[IpNet]>) -> Self {
        Self { allowed }
    }
}

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = Arc::clone(&self.allowed);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest substitutes the URL's port.
            let addrs = egress_policy::resolve_allowed(&host, 0, &allowed).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
