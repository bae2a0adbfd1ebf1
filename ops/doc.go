// Package ops holds no code: it is the operations pack an operator
// installs beside apiguard, and the tests that prove it against real
// parts.
//
//   - grafana/apiguard.json: the dashboard (traffic, security events, key
//     sets, stores), with a data source and a job variable.
//   - prometheus/rules.yml: recording rules; prometheus/alerts.yml: the
//     alerts, each with a section in RUNBOOKS.md.
//   - prometheus/alerts_test.yml: promtool unit tests of every alert
//     (promtool check rules / promtool test rules, run by .ci/run).
//
// The package's test starts examples/demo -serve -attacks -http and Debian's
// prometheus on loopback, runs the demo's attacks, and checks through
// Prometheus's HTTP API that every dashboard query returns series and that
// the alerts for the attacks fire; then it floods the demo with distinct
// paths, tokens, devices and addresses and checks that the number of
// series stays bounded. It skips when prometheus is not installed, unless
// APIGUARD_REQUIRE_PROMETHEUS=1.
package ops
