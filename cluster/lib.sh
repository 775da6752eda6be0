# Shared by cluster/*: where the cluster's state lives and how its parts are named.
# Every namespace, link and process cluster/up makes is recorded under $STATE, and cluster/down
# removes exactly those: nothing it did not create is ever touched.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${TANDEM_CLUSTER_STATE:-/run/tandem-cluster}"
# Overridable, so two clusters (two engineers, or a benchmark beside a check) can coexist.
PREFIX="${TANDEM_CLUSTER_PREFIX:-tdm}"    # namespaces: tdm-hub (the bridge), tdm-r1…, tdm-client
SUBNET="${TANDEM_CLUSTER_SUBNET:-10.77.0}" # region i is $SUBNET.i, the client namespace $SUBNET.200
CLIENT_IP="$SUBNET.200"
PEER_PORT=7946
API_PORT=7700

die() { echo "cluster: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"; }
is_up() { [ -f "$STATE/regions" ]; }
regions() { cat "$STATE/regions"; }
region_ip() { echo "$SUBNET.${1#r}"; }
api_of() { echo "$(region_ip "$1"):$API_PORT"; }
ns_of() { echo "$PREFIX-$1"; }
in_client() { ip netns exec "$PREFIX-client" "$@"; }
tandem_bin() { cat "$STATE/binary"; }

check_region() {
    grep -qx "$1" "$STATE/regions" || die "no region '$1' (regions: $(regions | tr '\n' ' '))"
}

# Records a namespace before creating it, so a failed `up` can still be cleaned.
make_ns() {
    echo "$1" >> "$STATE/namespaces"
    ip netns add "$1"
    ip -n "$1" link set lo up
}

# Starts region $1's node in its namespace on its data dir (kept across restarts).
start_node() {
    local r="$1" ip seed profile
    ip="$(region_ip "$r")"
    seed="$(region_ip "$(head -1 "$STATE/regions")")"
    profile="$(cat "$STATE/profile")"
    mkdir -p "$STATE/$r"
    # A node outlives whoever restarted it (TANDEM_PARENT_PID is for test runners).
    ip netns exec "$(ns_of "$r")" env -u TANDEM_PARENT_PID setsid "$(tandem_bin)" node --name "$r" --region "region-${r#r}" \
        --bind "$ip:$PEER_PORT" --api "$ip:$API_PORT" --data-dir "$STATE/$r/data" \
        --seed "$seed:$PEER_PORT" ${profile:+--profile "$profile"} --chaos \
        >> "$STATE/$r/node.log" 2>&1 < /dev/null &
    echo $! > "$STATE/$r/pid"
}

pid_of() { cat "$STATE/$1/pid" 2>/dev/null || true; }
alive() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# HTTP from the client namespace (curl is not assumed; the tandem binary is the client).
api_call() { # method region path [body]
    local m="$1" r="$2" p="$3" b="${4:-}"
    in_client "$(tandem_bin)" http "$m" "$(api_of "$r")" "$p" ${b:+--body "$b"}
}

# Re-sends a region's shaping (latency matrix + extra delay + loss to the node's chaos API).
apply_shaping() {
    local r="$1" delays="" extra other ms
    extra="$(cat "$STATE/$r/delay" 2>/dev/null || echo 0)"
    while read -r other ms; do
        [ "$other" = "$r" ] && continue
        delays="$delays${delays:+,}\"$(region_ip "$other")\":$ms"
    done < <(awk -v r="$r" '$1 == r { print $2, $3 }' "$STATE/latency")
    api_call POST "$r" /v1/chaos "{\"delayMs\":$extra,\"delays\":{$delays}}" > /dev/null
}
