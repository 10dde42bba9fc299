#!/usr/bin/env bash
# The Express anchor and the release build of workload-manager measured one
# after the other by the anchor's own bench.sh (wrk, 32 connections): run
# from the workspace root after `cargo build --release`. Needs wrk, node, npm.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
anchor=${WM_EXPRESS_ANCHOR:-$root/../shared/anchors/express}
bin=$root/target/release/workload-manager
[ -x "$bin" ] || { echo "no $bin: run cargo build --release first" >&2; exit 2; }
ours=$(mktemp)
trap 'rm -f "$ours"' EXIT
cat > "$ours" <<SH
#!/usr/bin/env bash
# The manager on \$PORT with nothing else reachable: the API side only.
exec env -i WM_LISTEN=127.0.0.1:\$PORT NODE_SYSTEM_ENDPOINT=http://127.0.0.1:9 \\
  NODE_PRIVATE_KEY=4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318 \\
  WM_KUBE_API_URL=http://127.0.0.1:9 WM_LOG=warn "$bin"
SH
chmod +x "$ours"
echo "## Express anchor"
bash "$anchor/bench.sh"
echo "## workload-manager"
bash "$anchor/bench.sh" "$ours"
