// The `caseway audit` subcommands (docs/coordinators.md).
#ifndef CASEWAY_CLIENT_CLI_AUDIT_COMMANDS_H_
#define CASEWAY_CLIENT_CLI_AUDIT_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "client/audit/auditor.h"

namespace caseway::cli {

// AuditFlags are the options the audit subcommands share.
struct AuditFlags {
  std::string ca, cert, key, directory;
  std::string state_dir, bundle_dir;
  std::string grace = "10m";
  std::string stale = "2m";
  bool skip_notice_bytes = false;
  bool progress = false;
  bool bundle_all = false;
};

// ReportFlags are the options of `caseway audit report`.
struct ReportFlags {
  std::vector<std::string> nodes;
  std::string period;
  std::string policy;
  std::string format = "table";  // table, csv, json
  bool details = false;
  std::string html;              // write the joint-meeting page here
  std::string lang = "zh";       // zh, en
  std::string level = "county";  // county, prefecture, province
};

// AuditCommands holds what the command line said for `caseway audit ...`.
struct AuditCommands {
  AuditFlags flags;
  std::string node_a, node_b;
  std::string target;  // notice id (evidence) or bundle file (verify-bundle)
  std::string evidence_origin;
  bool evidence_json = false;
  CLI::App* verify = nullptr;
  CLI::App* reconcile = nullptr;
  CLI::App* evidence = nullptr;
  CLI::App* bundle = nullptr;
  CLI::App* report = nullptr;
  ReportFlags report_flags;
  bool parsed() const;
};

// AddAuditCommands registers `audit verify | reconcile | evidence | verify-bundle` under `app`;
// `c` receives the parsed values and must outlive parsing.
void AddAuditCommands(CLI::App& app, AuditCommands* c);

// MakeAuditor builds an auditor from the shared flags.
absl::StatusOr<std::unique_ptr<caseway::client::audit::Auditor>> MakeAuditor(const AuditFlags& f);

// RunAuditReport runs `caseway audit report` (report_command.cc).
int RunAuditReport(const AuditFlags& flags, const ReportFlags& report);

// RunAuditCommand runs the subcommand that was parsed. Exit status: 0 nothing found, 1 findings,
// 2 the audit could not run.
int RunAuditCommand(const AuditCommands& c);

}  // namespace caseway::cli

#endif  // CASEWAY_CLIENT_CLI_AUDIT_COMMANDS_H_
