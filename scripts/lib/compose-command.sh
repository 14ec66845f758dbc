# Sourced: sets COMPOSE to the Compose command this machine has,
# `docker-compose` (v1, as on the CI machine) or `docker compose` (v2),
# or exits with a message.
if command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  echo "$0: neither docker-compose nor 'docker compose' is available" >&2
  exit 1
fi
