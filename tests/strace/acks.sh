#!/usr/bin/env bash
# Evidence that every 2xx the hub answers follows a real fsync/fdatasync of the database
# (issue 10, BENCHMARKS.md "Durable acknowledgements"). Runs a hub and the simulator, sends
# requests one after another — account creations (201), customer messages delivered as signed
# webhooks (200), replies (202) — under `strace -f -tt -e trace=fsync,fdatasync,…`, then checks
# that between any two 2xx answers there was at least one fsync/fdatasync of the database.
#
#   tests/strace/acks.sh target/release/sop                       # SQLite
#   tests/strace/acks.sh target/release/sop postgres://…/db PID    # PostgreSQL; PID: its postmaster
#
# On PostgreSQL the fsyncs are the server's (WAL flush at commit); its processes are traced too
# and the two traces merged by time.
set -euo pipefail
SOP=$(realpath "$1")
DATABASE=${2:-}
POSTMASTER=${3:-}
N=${N:-20}
OUT=$(mktemp -d /tmp/sop-strace-XXXX)
HUB_PORT=18741
SIM_PORT=18742
HUB=http://127.0.0.1:$HUB_PORT
SIM=http://127.0.0.1:$SIM_PORT
export SOP_ZALO_APP_ID=strace-app SOP_ZALO_APP_SECRET=strace-secret SOP_ZALO_OA_SECRET_KEY=strace-oa
export SOP_ZALO_OAUTH_BASE=$SIM SOP_ZALO_API_BASE=$SIM SOP_ZALO_REDIRECT_URI=$HUB/zalo/oauth/callback
[ -n "$DATABASE" ] && export SOP_DATABASE_URL=$DATABASE
pids=()
cleanup() {
  # The hub itself (strace waits for its tracee), then the rest.
  pkill -f "serve --listen 127.0.0.1:$HUB_PORT" || true
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

TOKEN=$("$SOP" admin --data-dir "$OUT/data" account add --email admin@sop.vn --username admin \
  --name Admin --role admin | tail -1)
"$SOP" zalo-sim --listen 127.0.0.1:$SIM_PORT --webhook $HUB/zalo/webhook --app-id strace-app \
  --app-secret strace-secret --oa-secret-key strace-oa --auto-approve >"$OUT/sim.log" 2>&1 &
pids+=($!)
TRACED="fsync,fdatasync,write,writev,sendto"
if [ -n "$POSTMASTER" ]; then
  strace -f -tt -e trace=fsync,fdatasync -o "$OUT/postgres.trace" -p "$POSTMASTER" 2>/dev/null &
  pids+=($!)
fi
strace -f -tt -e trace=$TRACED -o "$OUT/hub.trace" \
  "$SOP" serve --listen 127.0.0.1:$HUB_PORT --data-dir "$OUT/data" >"$OUT/hub.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf $HUB/healthz >/dev/null && break; sleep 0.1; done

api() { curl -s -o /dev/null -w "%{http_code}\n" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' "$@"; }
# A page (the simulator approves the consent), a rule giving every chat to the admin.
curl -s -X POST "$SIM/sim/oas" -H 'content-type: application/json' -d '{"oa_id":"4321",
  "name":"Trang","admins":["zalo-admin-1"],"customers":[{"user_id":"u1","name":"Khách"}]}' >/dev/null
url=$(curl -s -X POST -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{}' \
  $HUB/api/v1/connections/zalo/authorize | sed 's/.*"authorization_url":"\([^"]*\)".*/\1/')
curl -s -L -o /dev/null "$url"
page=$(curl -s -H "authorization: Bearer $TOKEN" $HUB/api/v1/connections | sed 's/.*"id":"\(p[0-9]*\)".*/\1/')
api -X POST -d "{\"name\":\"r\",\"sources\":[\"$page\"],\"members\":[\"admin\"],\"method\":\"round_robin\",
  \"old_conversations\":\"none\"}" $HUB/api/v1/rules >/dev/null

: >"$OUT/mark"  # the requests that count start here
start=$(date +%H:%M:%S.%N | cut -c1-15)
for i in $(seq "$N"); do
  api -X POST -d "{\"email\":\"n$i@sop.vn\",\"username\":\"nv$i\",\"name\":\"NV\",\"role\":\"agent\"}" \
    $HUB/api/v1/accounts
done >"$OUT/codes"
for i in $(seq "$N"); do
  curl -s -X POST "$SIM/sim/oas/4321/customers/u1/messages" -H 'content-type: application/json' \
    -d "{\"kind\":\"text\",\"text\":\"Tin $i\"}" >/dev/null
  sleep 0.05 # one webhook at a time: each is its own batch
done
conv=$(curl -s -H "authorization: Bearer $TOKEN" "$HUB/api/v1/conversations?view=all" |
  sed 's/.*"id":"\(c[0-9]*\)".*/\1/')
for i in $(seq "$N"); do
  api -X POST -d "{\"client_key\":\"k$i\",\"text\":\"Dạ $i\"}" $HUB/api/v1/conversations/$conv/reply
done >>"$OUT/codes"
sleep 1
cleanup
trap - EXIT

# Merge the traces by time (from `start`), keep completed syncs (a sync strace split in two counts
# when it returns) and 2xx answers, then count answers with no sync since the previous answer.
# Reads need none: the one GET, the conversation lookup, is left out.
cat "$OUT"/*.trace | awk -v start="$start" '$2 >= start' | sort -k2 |
  grep -E '(fsync|fdatasync)(\(| resumed).* = 0$|HTTP/1\.1 2[0-9][0-9]' >"$OUT/merged"
awk '
  /"items/ { next } # the GET
  /HTTP\/1\.1 2[0-9][0-9]/ { match($0, /HTTP\/1\.1 [0-9]+/); code = substr($0, RSTART + 9, 3);
                             answers[code]++; if (!synced) bare[code]++; synced = 0; next }
  { synced = 1; syncs++ }
  END { for (c in answers) printf "%s answers: %d, with no fsync/fdatasync before them: %d\n",
        c, answers[c], bare[c] + 0; printf "syncs: %d\n", syncs }
' "$OUT/merged"
echo "client saw: $(sort "$OUT/codes" | uniq -c | tr '\n' ' ')"
echo "traces in $OUT"
