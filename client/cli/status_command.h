// `caseway status`: the node's channels, subscriptions and inbox, and with --check the
// problems an operator must act on (docs/cli.md, docs/operator.md "Watching a node").
#ifndef CASEWAY_CLIENT_CLI_STATUS_COMMAND_H_
#define CASEWAY_CLIENT_CLI_STATUS_COMMAND_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "caseway/client/client.h"
#include "caseway/v1/gateway.pb.h"

namespace caseway::cli {

struct StatusFlags {
  bool json = false;
  bool check = false;
  // --check thresholds, as the flags give them ("15m", "1h", "30").
  std::string backlog_age = "15m";
  std::string inbox_age = "1h";
  int cert_days = 30;
  std::string down_for = "1m";
};

// CheckThresholds are the parsed --check limits.
struct CheckThresholds {
  absl::Duration backlog_age = absl::Minutes(15);  // oldest notice a destination has not acked
  absl::Duration inbox_age = absl::Hours(1);       // oldest notice the consumer has not taken
  absl::Duration certificate = absl::Hours(24 * 30);  // least remaining certificate validity
  absl::Duration down_for = absl::Minutes(1);  // a subscription silent this long is a problem
};

// Problems lists, one line each, what `status --check` reports against `limits`, measured on
// the node's own clock (StatusResponse.now): a halted node, a subscription not connected and
// not heard from for `down_for` (or never since the node started), a
// witness finding, another policy, a skewed clock, a backlog or an inbox older than its limit, a
// certificate that expires within its limit.
std::vector<std::string> Problems(const caseway::v1::StatusResponse& status,
                                  const CheckThresholds& limits);

// RunStatus prints the status (a table, or StatusResponse as JSON with every field, zeros too)
// and returns the exit status: 0 healthy; 1 halted, refused, or with --check any problem
// (listed on stderr); 2 the node was not reached (UNAVAILABLE, DEADLINE_EXCEEDED) or the flags
// are wrong.
int RunStatus(caseway::client::Client& client, const StatusFlags& flags);

}  // namespace caseway::cli

#endif  // CASEWAY_CLIENT_CLI_STATUS_COMMAND_H_
