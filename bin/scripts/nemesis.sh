#!/usr/bin/env bash
# The long nemesis: three nodes on PostgreSQL under a seeded schedule of kills, pauses and
# link cuts while clients deposit, withdraw, bid and cancel (tests/tests/nemesis.rs says what
# is checked). Usage: bin/scripts/nemesis.sh [rounds, default 40] [seed, default: the clock].
# The seed is printed first and again on failure, so a failing schedule can be replayed.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-40}"
seed="${2:-$(date +%s)}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
echo "nemesis: seed $seed, $rounds rounds"
if ! NEMESIS_SEED="$seed" NEMESIS_ROUNDS="$rounds" cargo test --locked -p tradefloor-tests \
    --test nemesis -- --nocapture; then
    echo "nemesis FAILED: replay with bin/scripts/nemesis.sh $rounds $seed" >&2
    exit 1
fi
echo "nemesis passed: seed $seed, $rounds rounds"
