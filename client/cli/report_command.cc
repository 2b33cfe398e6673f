// `caseway audit report`: the two-way assessment of one reporting period (docs/policy.md).
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/audit/assessment.h"
#include "client/cli/audit_commands.h"
#include "client/cli/report_html.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/json.h"
#include "common/policy.h"

namespace caseway::cli {
namespace {

namespace v1 = caseway::v1;
using caseway::client::audit::Assessment;
using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp Ts(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

v1::Date ToDate(absl::CivilDay d) {
  v1::Date out;
  out.set_year(static_cast<int32_t>(d.year()));
  out.set_month(d.month());
  out.set_day(d.day());
  return out;
}

void CopyRow(const caseway::client::audit::IndicatorRow& r, v1::AssessmentReport::Indicator* out) {
  out->set_indicator(r.indicator);
  out->set_scored(r.scored);
  out->set_origin(r.origin);
  out->set_destination(r.destination);
  out->set_scope(r.scope);
  out->set_priority(r.priority);
  out->set_numerator(r.numerator);
  out->set_denominator(r.denominator);
  out->set_rate(r.rate());
  out->set_target(r.target);
  out->set_below_target(r.below());
  out->set_clock_marked(r.clock_marked);
}

v1::AssessmentReport ToProto(const Assessment& a, const std::vector<std::string>& nodes,
                             bool details) {
  v1::AssessmentReport out;
  out.set_period(a.period.label);
  *out.mutable_first_day() = ToDate(a.period.first);
  *out.mutable_last_day() = ToDate(a.period.last);
  *out.mutable_cutoff() = Ts(a.cutoff);
  out.set_policy_version(a.policy_version);
  out.set_policy_digest(a.policy_digest);
  for (const auto& n : nodes) out.add_nodes(n);
  for (const auto& r : a.rows) CopyRow(r, out.add_indicators());
  for (const auto& r : a.totals) CopyRow(r, out.add_totals());
  if (details) {
    for (const auto& d : a.details) {
      auto* o = out.add_details();
      o->set_indicator(d.indicator);
      o->set_problem(d.problem);
      o->set_origin(d.origin);
      o->set_destination(d.destination);
      o->set_notice_id(d.notice_id);
      o->set_seq(d.seq);
      *o->mutable_due() = Ts(d.due);
      if (d.at) *o->mutable_at() = Ts(*d.at);
      o->set_evidence(d.evidence);
      o->set_clock(d.clock);
    }
  }
  for (const auto& f : a.flows) {
    auto* o = out.add_flows();
    o->set_origin(f.origin);
    o->set_destination(f.destination);
    o->set_kind(f.kind);
    o->set_count(f.count);
  }
  for (const auto& n : a.notes) out.add_notes(n);
  *out.mutable_generated_at() = Ts(common::Now());
  return out;
}

std::string ScopeName(v1::Scope s) {
  return s == v1::SCOPE_INTRA_PROVINCE ? "intra" : s == v1::SCOPE_INTER_PROVINCE ? "inter" : "-";
}
std::string PriorityName(v1::Priority p) {
  return p == v1::PRIORITY_SUBJECT ? "subject" : p == v1::PRIORITY_NORMAL ? "normal" : "all";
}
std::string Cst(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(t.seconds()),
                          common::ChinaStandardTime());
}
std::string Csv(absl::string_view s) {
  if (s.find_first_of(",\"\n") == absl::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

void PrintTable(const v1::AssessmentReport& r, bool details) {
  printf("Assessment %s (%04d-%02d-%02d .. %04d-%02d-%02d CST), policy %s (%.16s…)\n",
         r.period().c_str(), r.first_day().year(), r.first_day().month(), r.first_day().day(),
         r.last_day().year(), r.last_day().month(), r.last_day().day(), r.policy_version().c_str(),
         r.policy_digest().c_str());
  printf("nodes: %s\n\n", absl::StrJoin(r.nodes(), ", ").c_str());
  auto line = [](const v1::AssessmentReport::Indicator& i) {
    printf("%-24s %-11s %-7s %-7s %-5s %-8s %7llu/%-7llu %6.1f%% %6.1f%%  %s%s\n",
           i.indicator().c_str(), i.scored().c_str(), i.origin().empty() ? "*" : i.origin().c_str(),
           i.destination().empty() ? "*" : i.destination().c_str(), ScopeName(i.scope()).c_str(),
           PriorityName(i.priority()).c_str(), static_cast<unsigned long long>(i.numerator()),
           static_cast<unsigned long long>(i.denominator()), i.rate(), i.target(),
           i.below_target() ? "BELOW" : "ok",
           i.clock_marked() > 0 ? absl::StrCat("  (", i.clock_marked(), " clock-marked)").c_str() : "");
  };
  printf("%-24s %-11s %-7s %-7s %-5s %-8s %15s %7s %7s  %s\n", "INDICATOR", "SCORED", "ORIGIN",
         "DEST", "SCOPE", "PRIORITY", "NUM/DEN", "RATE", "TARGET", "");
  for (const auto& i : r.indicators()) line(i);
  printf("\nTOTALS BY SCOPE\n");
  for (const auto& i : r.totals()) line(i);
  if (details) {
    printf("\nITEMS COUNTED AGAINST A SIDE (check with: caseway audit evidence NODE NOTICE_ID)\n");
    for (const auto& d : r.details()) {
      printf("%-24s %-18s %s->%s seq %llu  %s  due %s%s%s  [%s]%s\n", d.indicator().c_str(),
             d.problem().c_str(), d.origin().c_str(), d.destination().c_str(),
             static_cast<unsigned long long>(d.seq()), d.notice_id().c_str(), Cst(d.due()).c_str(),
             d.has_at() ? ", at " : "", d.has_at() ? Cst(d.at()).c_str() : "", d.evidence().c_str(),
             d.clock() ? " clock" : "");
    }
  }
  for (const auto& n : r.notes()) printf("\nnote: %s\n", n.c_str());
}

void PrintCsv(const v1::AssessmentReport& r, bool details) {
  if (details) {
    printf("indicator,problem,origin,destination,seq,notice_id,due,at,evidence,clock\n");
    for (const auto& d : r.details()) {
      printf("%s,%s,%s,%s,%llu,%s,%s,%s,%s,%s\n", d.indicator().c_str(), d.problem().c_str(),
             d.origin().c_str(), d.destination().c_str(), static_cast<unsigned long long>(d.seq()),
             Csv(d.notice_id()).c_str(), TimeUtil::ToString(d.due()).c_str(),
             d.has_at() ? TimeUtil::ToString(d.at()).c_str() : "", Csv(d.evidence()).c_str(),
             d.clock() ? "true" : "false");
    }
    return;
  }
  printf("period,indicator,scored,origin,destination,scope,priority,numerator,denominator,rate,"
         "target,below_target,clock_marked\n");
  auto row = [&](const v1::AssessmentReport::Indicator& i) {
    printf("%s,%s,%s,%s,%s,%s,%s,%llu,%llu,%.2f,%.2f,%s,%llu\n", r.period().c_str(),
           i.indicator().c_str(), i.scored().c_str(), i.origin().c_str(), i.destination().c_str(),
           ScopeName(i.scope()).c_str(), PriorityName(i.priority()).c_str(),
           static_cast<unsigned long long>(i.numerator()),
           static_cast<unsigned long long>(i.denominator()), i.rate(), i.target(),
           i.below_target() ? "true" : "false", static_cast<unsigned long long>(i.clock_marked()));
  };
  for (const auto& i : r.indicators()) row(i);
  for (const auto& i : r.totals()) row(i);
}

}  // namespace

int RunAuditReport(const AuditFlags& flags, const ReportFlags& rf) {
  auto fail = [](const std::string& what) {
    fprintf(stderr, "caseway audit report: %s\n", what.c_str());
    return 2;
  };
  common::Policy policy = common::Policy::Default();
  if (!rf.policy.empty()) {
    auto loaded = common::Policy::Load(rf.policy);
    if (!loaded.ok()) return fail(std::string(loaded.status().message()));
    policy = std::move(*loaded);
  }
  auto period = policy.PeriodNamed(rf.period);
  if (!period.ok()) return fail(absl::StrCat("--", period.status().message()));
  auto auditor = MakeAuditor(flags);
  if (!auditor.ok()) return fail(std::string(auditor.status().message()));

  // Each log is verified and folded into the history, then dropped: memory grows with the
  // facts of the notices, not with the logs.
  caseway::client::audit::History history;
  std::vector<std::string> nodes;
  std::vector<std::string> notes;
  bool unverified = false;
  for (const auto& address : rf.nodes) {
    std::vector<caseway::client::audit::Finding> findings;
    auto log = (*auditor)->Verify(address, &findings);
    if (!log.ok()) return fail(absl::StrCat(address, ": ", log.status().ToString()));
    for (const auto& f : findings) {
      if (f.status == "STALE_CHECKPOINT") {
        notes.push_back(f.detail);
        continue;
      }
      fprintf(stderr, "caseway audit report: %s (%s): %s: %s\n", address.c_str(),
              log->jurisdiction.c_str(), f.status.c_str(), f.detail.c_str());
      unverified = true;
    }
    // The policy each node recorded, against the one applied here.
    std::string last;
    for (const auto& e : log->parsed) {
      if (e.kind() == v1::LogEntry::KIND_POLICY) last = e.digest();
    }
    if (!last.empty() && last != policy.digest()) {
      notes.push_back(absl::StrCat(log->jurisdiction, " runs policy ", common::ToHex(last).substr(0, 16),
                                   "…, not the one applied here (", policy.DigestHex().substr(0, 16),
                                   "…)"));
    }
    if (unverified) continue;  // no report; the remaining logs are still verified for stderr
    if (absl::Status s = (*auditor)->CollectInto(*log, history); !s.ok()) {
      return fail(absl::StrCat(address, ": ", s.ToString()));
    }
    nodes.push_back(log->jurisdiction);
  }
  if (unverified) {
    fprintf(stderr, "caseway audit report: no report: it rests on verified logs only (run "
                    "`caseway audit verify` for the findings and their bundles)\n");
    return 1;
  }
  (*auditor)->FinishHistory(history);
  const bool details = rf.details || !rf.html.empty();
  Assessment a = caseway::client::audit::Assess(history, policy, *period, common::Now(), details);
  a.notes.insert(a.notes.begin(), notes.begin(), notes.end());
  v1::AssessmentReport report = ToProto(a, nodes, details);

  if (!rf.html.empty()) {
    auto trend = [&](const std::string& label) -> std::optional<v1::AssessmentReport> {
      auto p = policy.PeriodNamed(label);
      if (!p.ok()) return std::nullopt;
      return ToProto(caseway::client::audit::Assess(history, policy, *p, common::Now(), false),
                     nodes, false);
    };
    std::vector<v1::AssessmentReport> history_reports;
    for (const std::string& label : PreviousPeriods(policy, *period, 11)) {
      if (auto r = trend(label)) history_reports.push_back(std::move(*r));
    }
    HtmlOptions options{rf.lang, rf.level};
    std::string page = RenderHtml(report, history_reports, options);
    std::ofstream out(rf.html, std::ios::trunc);
    out << page;
    if (!out) return fail(absl::StrCat("--html: ", rf.html, ": cannot write"));
    fprintf(stderr, "caseway audit report: wrote %s\n", rf.html.c_str());
  }
  v1::AssessmentReport printed = report;
  if (!rf.details) printed.clear_details();
  if (rf.format == "json") {
    std::string json;
    google::protobuf::util::JsonPrintOptions o;
    o.preserve_proto_field_names = true;
    o.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(printed, &json, o);
    printf("%s\n", json.c_str());
  } else if (rf.format == "csv") {
    PrintCsv(printed, rf.details);
  } else {
    PrintTable(printed, rf.details);
  }
  return 0;
}

}  // namespace caseway::cli
