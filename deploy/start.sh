#!/usr/bin/env bash
# Start one role of a scaled-out mmrag on this machine. Every machine gets the same checkout,
# `uv sync`, and the environment of deploy/mmrag.env.example; then, by role:
#
#   deploy/start.sh daemon        # once: Dagster daemon (sensor, schedule, queued runs, run monitoring)
#   deploy/start.sh webserver     # once: Dagster UI on :3000
#   deploy/start.sh worker-cpu    # any number: ingestion steps (render, OCR, ASR, contracts)
#   deploy/start.sh worker-gpu    # one per GPU: embedding and publishing (the only ones that load a visual model)
#   deploy/start.sh index         # from anywhere: one `mmrag index` over the workers
#   deploy/start.sh serve         # any number of search replicas (each reads the published version from S3)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DAGSTER_HOME:?set DAGSTER_HOME (see deploy/mmrag.env.example)}"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

OVR=(orchestration=celery catalog=postgres "storage.allow_http=${MMRAG_ALLOW_HTTP:-false}" ${MMRAG_EXTRA_OVERRIDES:-})
export MMRAG_OVERRIDES
MMRAG_OVERRIDES=$(printf '%s\n' "${OVR[@]}" | uv run python -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))')

case "${1:-}" in
  daemon)     exec uv run dagster-daemon run -w deploy/workspace.yaml ;;
  webserver)  exec uv run dagster-webserver -w deploy/workspace.yaml -h 0.0.0.0 -p "${PORT:-3000}" ;;
  worker-cpu) exec uv run mmrag worker --queue dagster --name "cpu-$(hostname)" --concurrency "${CONCURRENCY:-1}" "${OVR[@]}" ;;
  worker-gpu) exec uv run mmrag worker --queue mmrag-embed --name "gpu-$(hostname)" --concurrency 1 "${OVR[@]}" ;;
  index)      exec uv run mmrag index "${OVR[@]}" "orchestration.workers=${WORKERS:-2}" ;;
  serve)      exec uv run mmrag serve --host 0.0.0.0 --port "${PORT:-8000}" "${OVR[@]}" ;;
  *) echo "usage: $0 daemon|webserver|worker-cpu|worker-gpu|index|serve" >&2; exit 2 ;;
esac
