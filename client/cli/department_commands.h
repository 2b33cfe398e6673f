// `caseway department`: a department (public security, civil affairs, ...) reading what a node's
// sharing policy grants it, with its own certificate: a case or subject now (`query`), or every
// granted notice as it is stored (`follow`). docs/privacy.md, "Departments".
#ifndef CASEWAY_CLIENT_CLI_DEPARTMENT_COMMANDS_H_
#define CASEWAY_CLIENT_CLI_DEPARTMENT_COMMANDS_H_

#include <string>

namespace CLI {
class App;
}

namespace caseway::cli {

struct DepartmentFlags {
  std::string node;       // the node's jurisdiction (the signer of its answers)
  std::string address;
  std::string ca, cert, key;
  std::string directory;  // federation directory: the node's signing key
  std::string purpose;
  // query
  std::string case_id;
  std::string subject;
  // follow
  std::string state;            // the feed position, kept between runs
  std::string interval = "5s";  // wait between reads once caught up
  bool once = false;            // stop when caught up
  CLI::App* query = nullptr;
  CLI::App* follow = nullptr;
};

// AddDepartmentCommands adds `department query` and `department follow` to `app`.
void AddDepartmentCommands(CLI::App& app, DepartmentFlags* flags);
// RunDepartment runs the parsed one; returns the exit status, or -1 when neither was given.
int RunDepartment(const DepartmentFlags& flags);

}  // namespace caseway::cli

#endif  // CASEWAY_CLIENT_CLI_DEPARTMENT_COMMANDS_H_
