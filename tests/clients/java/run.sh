#!/usr/bin/env bash
# Java client and Kafka CLI tool tests against a real shoal broker.
#
#   tests/clients/java/run.sh [extra mvn args, e.g. -Dtest=ProducerTest]
#
# Env: SHOAL_BIN   broker binary (default <repo>/target/release/shoal); this script
#                  builds nothing in Rust.
#      SHOAL_CORES, SHOAL_READY_TIMEOUT, SHOAL_EXTRA_ARGS, SHOAL_KEEP_DATA: see README.md.
#      SHOAL_JAVA_TEST_TIMEOUT  bound on the test step in seconds (default 600).
# Maven's local repository is <repo>/.cache/m2 (gitignored): a clean clone downloads
# the pinned Kafka jars there on its first run (step 1, bounded separately).
# Exit code: 0 if every test passed, non-zero otherwise.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
export SHOAL_BIN=${SHOAL_BIN:-$ROOT/target/release/shoal}
M2=$ROOT/.cache/m2
MVN=(mvn -B -q -Dmaven.repo.local="$M2" -f "$HERE/pom.xml")

die() { echo "run.sh: error: $*" >&2; exit 2; }

command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install maven)"
command -v java >/dev/null 2>&1 || die "java not found (Java 17 needed)"
if [ ! -f "$SHOAL_BIN" ] || [ ! -x "$SHOAL_BIN" ]; then
    die "broker binary not found or not executable: $SHOAL_BIN
  build it first (cargo build --release -p shoal-server) or point SHOAL_BIN at it"
fi
SHOAL_BIN=$(cd "$(dirname "$SHOAL_BIN")" && pwd)/$(basename "$SHOAL_BIN")
export SHOAL_BIN

cd "$HERE" || die "cd $HERE"
# Reports, broker logs and the brokers' data dirs of an earlier run (one killed before it
# could delete them, too).
rm -rf "$HERE/target/surefire-reports" "$HERE/target/shoal-logs" "$HERE/target/shoal-tmp"

# 1. dependencies and compilation (downloads only on a first run), running no test.
timeout --kill-after=30 1200 "${MVN[@]}" test -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false \
    || die "maven build (step 1: dependencies and compilation) failed"

# 2. the tests, bounded (surefire also kills its fork after 540 s). Not offline: surefire
#    resolves its JUnit provider only when there are tests to run (a small download, once).
start=$(date +%s)
timeout --kill-after=30 "${SHOAL_JAVA_TEST_TIMEOUT:-600}" "${MVN[@]}" test "$@"
rc=$?
took=$(( $(date +%s) - start ))

# 3. the surefire summary (mvn -q prints only failures).
reports=("$HERE"/target/surefire-reports/TEST-*.xml)
if [ ! -e "${reports[0]}" ]; then
    echo "run.sh: error: no surefire reports (mvn exit code $rc)" >&2
    exit 1
fi
total=0; failed=0; errors=0; skipped=0
printf '%-40s %6s %6s %6s %8s %8s\n' "test class" tests fail error skipped seconds
for f in "${reports[@]}"; do
    head=$(grep -m1 -o '<testsuite [^>]*>' "$f")
    attr() { printf '%s' "$head" | grep -o " $1=\"[^\"]*\"" | head -1 | cut -d'"' -f2; }
    name=$(attr name); t=$(attr tests); fl=$(attr failures); er=$(attr errors); sk=$(attr skipped); tm=$(attr time)
    printf '%-40s %6s %6s %6s %8s %8s\n' "${name#dev.shoal.it.}" "$t" "$fl" "$er" "$sk" "$tm"
    total=$((total + t)); failed=$((failed + fl)); errors=$((errors + er)); skipped=$((skipped + sk))
done
echo "Tests run: $total, Failures: $failed, Errors: $errors, Skipped: $skipped (test step ${took}s; broker logs in target/shoal-logs)"
if [ "$failed" -gt 0 ] || [ "$errors" -gt 0 ]; then
    echo "Failed tests:"
    for f in "${reports[@]}"; do
        awk '/<testcase /{match($0, /name="[^"]*"/); n=substr($0, RSTART+6, RLENGTH-7);
                          match($0, /classname="[^"]*"/); c=substr($0, RSTART+11, RLENGTH-12)}
             /<(failure|error)[ >]/{print "  " c "." n}' "$f"
    done
fi
if [ "$rc" -ne 0 ]; then
    if [ "$rc" -ge 124 ]; then
        echo "run.sh: error: the test step hit its time limit (exit $rc)" >&2
    else
        echo "run.sh: error: mvn exited with $rc (failed tests, or the test JVM crashed or timed out: see above)" >&2
    fi
    exit "$rc"
fi
if [ "$total" -eq 0 ]; then
    echo "run.sh: error: no tests ran" >&2
    exit 1
fi
[ "$failed" -eq 0 ] && [ "$errors" -eq 0 ] || exit 1
exit 0
