// The joint-meeting report: one self-contained HTML page (no external assets, no script) with
// the indicator tables, a chart per indicator against the target, origin x destination matrices,
// the trend over the last 12 periods, the items counted against each office and the flow
// statistics; Chinese or English labels; A4 landscape when printed.
#ifndef CASEWAY_CLIENT_CLI_REPORT_HTML_H_
#define CASEWAY_CLIENT_CLI_REPORT_HTML_H_

#include <string>
#include <vector>

#include "caseway/v1/audit.pb.h"
#include "common/policy.h"

namespace caseway::cli {

struct HtmlOptions {
  std::string lang = "zh";       // zh or en
  std::string level = "county";  // county, prefecture or province
};

// PreviousPeriods returns the labels of the `n` periods before `period`, oldest first.
std::vector<std::string> PreviousPeriods(const common::Policy& policy,
                                         const common::ReportingPeriod& period, int n);

// RenderHtml renders `report` with the trend of `previous` (oldest first, without `report`).
std::string RenderHtml(const caseway::v1::AssessmentReport& report,
                       const std::vector<caseway::v1::AssessmentReport>& previous,
                       const HtmlOptions& options);

// RegionName is the name of a region code (6-digit county, or a prefecture or province code
// padded with zeros) from the bundled table of 2023, or "" when unknown.
std::string RegionName(const std::string& code);

}  // namespace caseway::cli

#endif  // CASEWAY_CLIENT_CLI_REPORT_HTML_H_
