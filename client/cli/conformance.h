// `caseway conformance`: what an integrator runs against the node they deployed (docs/cli.md).
#ifndef CASEWAY_CLIENT_CLI_CONFORMANCE_H_
#define CASEWAY_CLIENT_CLI_CONFORMANCE_H_

#include <string>

#include "caseway/client/client.h"

namespace caseway::cli {

struct ConformanceFlags {
  // The federation's test destination: a peer whose inbox nobody processes (docs/operator.md,
  // "A test destination for conformance").
  std::string destination;
  // How long the round trip and the inbox may take, in seconds.
  int timeout_seconds = 30;
};

// RunConformance publishes test notices to `flags.destination` and checks the round trip,
// idempotency, the refusals of bad input and the inbox; prints one row per check. Returns 0 when
// every check passes, 1 otherwise.
int RunConformance(caseway::client::Client& client, const ConformanceFlags& flags);

}  // namespace caseway::cli

#endif  // CASEWAY_CLIENT_CLI_CONFORMANCE_H_
