#!/usr/bin/env bash
# Records what a `cairn` client built before the push acceptor and pull responder
# (`sync_protocol::accept`, `respond`, `wire`; commit 23836e4) sends and receives, so that
# sync-server/tests/http/old_client.rs can replay it against today's server and check every
# answer. Run by hand when the transcript must be made again; CI never runs it.
#
#   scripts/record-old-client.sh [OLD_TREE] [OUT_DIR]
#
# OLD_TREE (default /work/wt-old) is a checkout of 23836e4 with `cargo build -p sync-client
# -p sync-server` done; its target/debug/sync-server runs in embedded mode (SQLite and a folder,
# in a temporary folder) on a free port, and scripts/record_relay.py sits in front of it,
# writing every exchange whole, raw, in order, as OUT_DIR/NNN.request and NNN.response
# (default sync-server/tests/http/old_client/; earlier exchanges there are removed first).
# Through the relay:
#
#   - curl signs up `ada`; the old `cairn` logs in once with a wrong password (401
#     bad-credentials) and once for real (its token goes to $CAIRN_CONFIG); curl creates the
#     team `crew`; `cairn projects create` and `cairn projects` create and list `petstore`;
#   - copy a (`cairn init`): JSON files in folders, one of about 150 KB (over the 64 KiB
#     average chunk, so a file object travels) and 300 small ones (over 256 paths, so the
#     first push is a plain object stream); copies b (`clone` by id) and c (`clone` by name)
#     pull version 1;
#   - a: a one-line edit, pushed as change records; b: `pull`, answered with change records;
#   - c (stale, at version 1): an edit, `push` answered 409 conflict, after which the client
#     pulls, merges and pushes by itself; b: an edit and `sync` (pull with records, merge, push);
#   - d: a clone of that head, whose dirs the server rebuilt from change records; then, its
#     object cache deleted, an edit pushed the resumable way (`missing`, `objects`, `commits`);
#   - a: `log`, `restore 1` (a new version, then a pull with records), and a no-op `sync`.
#
# The event stream (`watch`) is left out: its answer never ends.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
old=${1:-/work/wt-old}
out=${2:-$root/sync-server/tests/http/old_client}
server_bin=$old/target/debug/sync-server
cairn_bin=$old/target/debug/cairn
for bin in "$server_bin" "$cairn_bin"; do
  [ -x "$bin" ] || { echo "record-old-client: no $bin; build it in $old first" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "record-old-client: $*" >&2; }

# The line `listening on ...` a process prints on standard output once it accepts connections.
wait_for_address() {
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$1" 2>/dev/null; then
      sed -n 's/^listening on \(http:\/\/\)\{0,1\}//p' "$1" | head -n 1
      return
    fi
    sleep 0.1
  done
  echo "record-old-client: $1 never said where it listens" >&2
  exit 1
}

# Embedded mode whatever the calling shell exports.
unset DATABASE_URL CAIRN_S3_ENDPOINT CAIRN_S3_BUCKET CAIRN_S3_REGION CAIRN_S3_PREFIX \
  CAIRN_S3_PATH_STYLE CAIRN_SERVER_CONFIG CAIRN_LISTEN CAIRN_SITE_DIR CAIRN_DATA_DIR
"$server_bin" serve --data-dir "$work/data" --site-dir "$work/no-site" --listen 127.0.0.1:0 \
  >"$work/server.out" 2>"$work/server.log" &
pids+=($!)
upstream=$(wait_for_address "$work/server.out")

mkdir -p "$out"
rm -f "$out"/[0-9][0-9][0-9].request "$out"/[0-9][0-9][0-9].response
python3 "$root/scripts/record_relay.py" "$upstream" "$out" >"$work/relay.out" 2>"$work/relay.log" &
pids+=($!)
url="http://$(wait_for_address "$work/relay.out")"
log "old server at $upstream, relay at $url"

export CAIRN_CONFIG=$work/config.toml HOSTNAME=recorder
password='correct horse battery'
cairn() { "$cairn_bin" "$@"; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

curl -sS --fail-with-body -o /dev/null "$url/v1/accounts" -H 'content-type: application/json' \
  -d '{"name": "ada", "email": "ada@example.com", "password": "correct horse battery"}'
if CAIRN_PASSWORD=wrong-password cairn login --server "$url" --user ada; then
  log "a wrong password was accepted"
  exit 1
fi
CAIRN_PASSWORD=$password cairn login --server "$url" --user ada
token=$(sed -n 's/^token = "\(cairn_[0-9a-f]*\)"$/\1/p' "$CAIRN_CONFIG")
curl -sS --fail-with-body -o /dev/null "$url/v1/teams" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"name": "crew"}'
project=$(cairn --json projects create --team crew petstore | json_field id)
cairn projects

# A small API project: JSON files in folders, and one large generated fixture.
mkdir -p "$work/a"
python3 - "$work/a" <<'EOF'
import json, os, sys
base = sys.argv[1]
def write(path, value):
    os.makedirs(os.path.dirname(os.path.join(base, path)), exist_ok=True)
    with open(os.path.join(base, path), "w") as file:
        file.write(json.dumps(value, indent=2) + "\n")
write("api/pets.json", {"method": "GET", "url": "{{base}}/pets", "query": {"limit": 20}})
write("api/orders.json", {"method": "POST", "url": "{{base}}/orders", "body": {"pet": 1}})
write("schemas/pet.json", {"type": "object", "required": ["id", "name"],
                           "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}})
write("schemas/order.json", {"type": "object", "properties": {"pet": {"type": "integer"}}})
write("environments/dev.json", {"base": "http://localhost:8080", "token": "dev"})
species = ["cat", "dog", "parrot", "turtle", "hamster", "goldfish", "iguana", "rabbit"]
state = 1
pets = []
for number in range(1, 1401):
    state = (state * 1103515245 + 12345) % 2**31
    pets.append({"id": number, "name": "pet-%05d-%x" % (number, state),
                 "species": species[state % len(species)], "age": state % 19,
                 "tags": ["t%d" % (state % 97), "t%d" % (state % 89)]})
write("fixtures/pets.json", {"pets": pets})
# More than 256 paths, so the first push is a plain object stream, not change records.
for number in range(1, 301):
    write("examples/pet-%03d.json" % number, {"id": number % 3 + 1})
EOF
[ "$(stat -c %s "$work/a/fixtures/pets.json")" -gt 131072 ] || { log "the fixture is too small"; exit 1; }

cairn init --server "$url" --project "$project" "$work/a"
cairn -C "$work/a" push -m "First version"
cairn clone --server "$url" --project "$project" "$work/b"
cairn clone --project petstore "$work/c"

sed -i 's/"limit": 20/"limit": 50/' "$work/a/api/pets.json"
cairn -C "$work/a" push -m "List 50 pets"
cairn -C "$work/b" pull

sed -i 's/"integer"/"number"/' "$work/c/schemas/order.json"
cairn -C "$work/c" push -m "Order pets by number"
sed -i 's/"dev"/"dev-2"/' "$work/b/environments/dev.json"
cairn -C "$work/b" sync -m "New dev token"
cairn clone --project "$project" "$work/d"
# d loses its object cache, so its next push cannot plan from the base: it asks the server
# what it lacks (`missing`), uploads that (`objects`) and commits (`commits`).
find "$work/d/.cairn/objects" -mindepth 1 -delete
sed -i 's/"POST"/"PUT"/' "$work/d/api/orders.json"
cairn -C "$work/d" push -m "Orders are PUT"

cairn -C "$work/a" log
cairn -C "$work/a" restore 1
cairn -C "$work/a" sync

kill "${pids[@]}"
pids=()
log "$(find "$out" -name '*.request' | wc -l) exchanges, $(du -sb "$out" | cut -f1) bytes in $out"
