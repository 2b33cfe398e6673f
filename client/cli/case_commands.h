// `caseway query`, `caseway case` and `caseway audit access`: remote queries, case timelines and
// the access log (docs/cli.md).
#ifndef CASEWAY_CLIENT_CLI_CASE_COMMANDS_H_
#define CASEWAY_CLIENT_CLI_CASE_COMMANDS_H_

#include <string>
#include <vector>

#include "caseway/client/client.h"

namespace caseway::cli {

struct QueryFlags {
  std::string peer;
  std::string case_id;
  std::string subject;  // an identity number
  bool json = false;
};

struct CaseFlags {
  std::string case_id;
  bool peers = false;                 // ask every peer party of the case too
  std::vector<std::string> peer_list;  // ask these peers too
  bool json = false;
};

struct AccessFlags {
  std::string id_number;
  bool json = false;
};

// Each returns the process exit status: 0 done, 1 refused or failed (printed on stderr).
int RunQuery(caseway::client::Client& client, const QueryFlags& flags);
int RunCase(caseway::client::Client& client, const CaseFlags& flags);
// RunAccess runs `caseway audit access --subject ID`.
int RunAccess(caseway::client::Client& client, const AccessFlags& flags);

}  // namespace caseway::cli

#endif  // CASEWAY_CLIENT_CLI_CASE_COMMANDS_H_
