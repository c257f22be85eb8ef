#!/bin/bash
# Wall time of the CLI test files that existed before the lazy imports (33 tests),
# a baseline tree against this one, back to back, twice (see docs/benchmarks.md).
#   git archive 2fa0a15 | tar -x -C /tmp/opscli/baseline && bench/cli_suite_ab.sh
set -u
BASELINE=${BASELINE:-/tmp/opscli/baseline}
HERE=$(cd "$(dirname "$0")/.." && pwd)
FILES="tests/sealgate/test_cli_accounts.py tests/sealgate/test_cli_keys_import.py tests/sealgate/test_cli_mailbox.py tests/sealgate/test_cli_queue.py tests/sealgate/test_cli_user_security.py tests/sealgate/test_rotate_master_totp.py tests/sealgate/test_serve.py tests/keystore/test_keys_cli.py"
PY=$HERE/.venv/bin/python
for round in 1 2; do
  for tree in $BASELINE $HERE; do
    cd $tree
    uptime
    start=$(date +%s.%N)
    PYTHONPATH=$tree $PY -m pytest -q -n 2 -p no:cacheprovider $FILES 2>&1 | tail -1
    end=$(date +%s.%N)
    echo "round $round $tree: $(echo "$end - $start" | bc) s wall"
  done
done
