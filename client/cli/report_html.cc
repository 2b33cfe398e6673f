#include "client/cli/report_html.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace caseway::cli {

extern const char kRegionAreas[];
extern const char kRegionCities[];
extern const char kRegionProvinces[];

namespace {

namespace v1 = caseway::v1;
using Indicator = v1::AssessmentReport::Indicator;

// ---- labels ----------------------------------------------------------------------------------

const std::map<std::string, std::pair<const char*, const char*>>& Labels() {
  static const auto* const kLabels = new std::map<std::string, std::pair<const char*, const char*>>{
      {"title", {"流动人口计划生育服务管理双向考核报告", "Two-way assessment report"}},
      {"period", {"考核周期", "Reporting period"}},
      {"policy", {"考核规则", "Federation policy"}},
      {"nodes", {"参与核验的节点", "Nodes whose verified logs were used"}},
      {"generated", {"生成时间", "Generated"}},
      {"cutoff", {"截止判定时间", "Deadlines judged up to"}},
      {"summary", {"指标汇总（按范围）", "Indicators by scope"}},
      {"pairs", {"各地指标（流出地 → 流入地）", "Indicators per pair (origin → destination)"}},
      {"charts", {"各地指标与目标值", "Each pair's rate against the target"}},
      {"matrix", {"流出地 × 流入地 指标矩阵", "Origin × destination matrix"}},
      {"trend", {"近12个周期趋势", "Trend over the last 12 periods"}},
      {"overdue", {"各单位未达标事项（仅编号）", "Items counted against each office (ids only)"}},
      {"flows", {"统计监测：通报流量", "Flow statistics"}},
      {"flow_trend", {"通报流量趋势", "Flow trend"}},
      {"notes", {"说明", "Notes"}},
      {"receipt_rate", {"接收率", "Receipt rate"}},
      {"feedback_rate", {"反馈率", "Feedback rate"}},
      {"timely_feedback_rate", {"及时反馈率", "Timely feedback rate"}},
      {"notification_timeliness", {"通报及时率", "Notification timeliness"}},
      {"indicator", {"指标", "Indicator"}},
      {"scored", {"考核对象", "Scored side"}},
      {"destination", {"流入地（接收方）", "destination (receiver)"}},
      {"origin", {"流出地（发送方）", "origin (sender)"}},
      {"scope", {"范围", "Scope"}},
      {"intra", {"省内", "intra-province"}},
      {"inter", {"跨省", "inter-province"}},
      {"from", {"流出地", "Origin"}},
      {"to", {"流入地", "Destination"}},
      {"num", {"达标数", "Met"}},
      {"den", {"应考核数", "Counted"}},
      {"rate", {"比率", "Rate"}},
      {"target", {"目标", "Target"}},
      {"status", {"状态", "Status"}},
      {"below", {"未达标", "below target"}},
      {"ok", {"达标", "met"}},
      {"clock", {"时钟存疑", "clock-marked"}},
      {"none", {"无", "none"}},
      {"more", {"其余", "more:"}},
      {"office", {"单位", "Office"}},
      {"kind", {"类别", "Kind"}},
      {"count", {"数量", "Count"}},
      {"total", {"合计", "Total"}},
      {"NOT_RECEIPTED", {"未接收", "not receipted"}},
      {"LATE_RECEIPT", {"逾期接收", "receipted late"}},
      {"NO_REPLY", {"未反馈", "no reply"}},
      {"LATE_REPLY", {"逾期反馈", "late reply"}},
      {"LATE_NOTIFICATION", {"逾期通报", "notified late"}},
      {"OCCURRED_AFTER_PUBLICATION", {"发生时间晚于通报", "dated after publication"}},
      {"residence_change.arrival", {"流入登记", "arrivals"}},
      {"residence_change.departure", {"流出登记", "departures"}},
      {"residence_change", {"流动变更", "residence changes"}},
      {"verification_request", {"协查", "verification requests"}},
      {"check_report", {"查环查孕", "check reports"}},
      {"pregnancy", {"怀孕", "pregnancies"}},
      {"birth", {"出生", "births"}},
      {"birth_service_registration", {"生育服务登记", "birth-service registrations"}},
      {"certificate", {"证明", "certificates"}},
      {"technical_service", {"技术服务", "technical services"}},
      {"fee", {"社会抚养费", "maintenance fees"}},
      {"status_change", {"状态变更", "status changes"}},
      {"feedback", {"反馈", "feedback"}},
      {"void", {"撤销", "voids"}},
      {"level_county", {"按县级汇总", "by county"}},
      {"level_prefecture", {"按地市汇总", "by prefecture"}},
      {"level_province", {"按省汇总", "by province"}},
      {"no_data", {"本周期无数据", "No data in this period"}},
  };
  return *kLabels;
}

class Text {
 public:
  explicit Text(bool zh) : zh_(zh) {}
  std::string operator()(const std::string& key) const {
    auto it = Labels().find(key);
    if (it == Labels().end()) return key;
    return zh_ ? it->second.first : it->second.second;
  }

 private:
  bool zh_;
};

std::string Esc(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string Pct(double v) { return absl::StrFormat("%.1f%%", v); }

std::string Cst(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(t.seconds()),
                          common::ChinaStandardTime());
}

// ---- regions ---------------------------------------------------------------------------------

const std::map<std::string, std::string>& RegionNames() {
  static const auto* const kNames = [] {
    auto* names = new std::map<std::string, std::string>();
    auto load = [names](const char* csv, size_t pad) {
      bool header = true;
      for (absl::string_view line : absl::StrSplit(csv, '\n', absl::SkipEmpty())) {
        if (header) {
          header = false;
          continue;
        }
        std::vector<absl::string_view> f = absl::StrSplit(line, ',');
        if (f.size() < 2) continue;
        std::string code(f[0]), name(f[1]);
        name.erase(std::remove(name.begin(), name.end(), '"'), name.end());
        name.erase(std::remove(name.begin(), name.end(), '\r'), name.end());
        code.append(pad, '0');
        (*names)[code] = name;
      }
    };
    load(kRegionProvinces, 4);
    load(kRegionCities, 2);
    load(kRegionAreas, 0);
    return names;
  }();
  return *kNames;
}

std::string Aggregate(const std::string& code, const std::string& level) {
  if (code.size() < 6) return code;
  if (level == "province") return code.substr(0, 2) + "0000";
  if (level == "prefecture") return code.substr(0, 4) + "00";
  return code.substr(0, 6);
}

std::string Place(const std::string& code) {
  const std::string name = RegionName(code);
  return name.empty() ? Esc(code) : absl::StrCat(Esc(code), " ", Esc(name));
}

// ---- aggregation -----------------------------------------------------------------------------

struct Cell {
  uint64_t num = 0, den = 0, clock = 0;
  double target = 0;
  v1::Scope scope = v1::SCOPE_UNSPECIFIED;
  double rate() const { return den == 0 ? 0 : 100.0 * num / den; }
  bool below() const { return den > 0 && rate() < target; }
};

using PairKey = std::tuple<std::string, std::string, std::string>;  // indicator, origin, dest

// Pairs sums the all-priority rows of `report` by region at `level`. Rows aggregated into one
// place keep the scope of their codes (same province: intra) and the target of that scope.
std::map<PairKey, Cell> Pairs(const v1::AssessmentReport& report, const std::string& level) {
  std::map<PairKey, Cell> out;
  for (const Indicator& i : report.indicators()) {
    if (i.priority() != v1::PRIORITY_UNSPECIFIED) continue;
    Cell& c = out[{i.indicator(), Aggregate(i.origin(), level), Aggregate(i.destination(), level)}];
    c.num += i.numerator();
    c.den += i.denominator();
    c.clock += i.clock_marked();
    c.scope = i.scope();
    c.target = std::max(c.target, i.target());
  }
  return out;
}

// ---- SVG -------------------------------------------------------------------------------------

// Bars draws one horizontal bar per pair with its target as a tick.
std::string Bars(const std::vector<std::pair<std::string, Cell>>& rows, const Text& t) {
  const int label_w = 260, bar_w = 480, row_h = 22, top = 24;
  const int h = top + row_h * static_cast<int>(rows.size()) + 24;
  std::string s = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" role=\"img\">",
      label_w + bar_w + 90, h, label_w + bar_w + 90, h);
  for (int p = 0; p <= 100; p += 25) {
    const int x = label_w + bar_w * p / 100;
    absl::StrAppendFormat(&s,
                          "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"grid\"/>"
                          "<text x=\"%d\" y=\"%d\" class=\"axis\">%d%%</text>",
                          x, top - 6, x, h - 18, x - 8, h - 4, p);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const Cell& c = rows[i].second;
    const int y = top + row_h * static_cast<int>(i);
    const int w = static_cast<int>(bar_w * c.rate() / 100);
    const int tx = label_w + static_cast<int>(bar_w * c.target / 100);
    absl::StrAppendFormat(
        &s,
        "<text x=\"%d\" y=\"%d\" class=\"label\">%s</text>"
        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"%s\"/>"
        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"target\"/>"
        "<text x=\"%d\" y=\"%d\" class=\"value\">%s</text>",
        4, y + 15, rows[i].first, label_w, y + 3, std::max(w, 1), row_h - 6,
        c.below() ? "bar below" : "bar", tx, y, tx, y + row_h, label_w + bar_w + 6, y + 15,
        Pct(c.rate()));
  }
  absl::StrAppendFormat(&s, "<text x=\"%d\" y=\"%d\" class=\"axis\">│ %s</text></svg>", label_w,
                        12, t("target"));
  return s;
}

// Lines draws one line per series over the periods, 0..100%, with the target dashed.
std::string Lines(const std::vector<std::string>& periods,
                  const std::vector<std::pair<std::string, std::vector<std::optional<double>>>>& series,
                  double target, bool percent, double max_value) {
  // right: room for half the last period's label, centred under its point.
  const int w = 520, h = 200, left = 44, right = 28, top = 10, bottom = 30;
  const double top_value = percent ? 100 : std::max(1.0, max_value);
  auto px = [&](size_t i) {
    return left + (periods.size() <= 1 ? 0 : static_cast<int>((w - left - right) * i / (periods.size() - 1)));
  };
  auto py = [&](double v) { return top + static_cast<int>((h - top - bottom) * (1 - v / top_value)); };
  std::string s = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" role=\"img\">",
      w, h, w, h);
  for (int k = 0; k <= 4; ++k) {
    const double v = top_value * k / 4;
    absl::StrAppendFormat(&s,
                          "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"grid\"/>"
                          "<text x=\"2\" y=\"%d\" class=\"axis\">%s</text>",
                          left, py(v), w - right, py(v), py(v) + 4,
                          percent ? absl::StrFormat("%.0f%%", v) : absl::StrFormat("%.0f", v));
  }
  for (size_t i = 0; i < periods.size(); ++i) {
    if ((periods.size() - 1 - i) % 2 == 0) {  // every other period, ending with this one
      absl::StrAppendFormat(&s, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"middle\">%s</text>",
                            px(i), h - 8, Esc(periods[i]));
    }
  }
  if (percent && target > 0) {
    absl::StrAppendFormat(&s, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"target dashed\"/>",
                          left, py(target), w - right, py(target));
  }
  const char* classes[] = {"s0", "s1", "s2", "s3"};
  for (size_t k = 0; k < series.size(); ++k) {
    std::string points;
    for (size_t i = 0; i < series[k].second.size(); ++i) {
      if (!series[k].second[i]) continue;
      absl::StrAppendFormat(&points, "%d,%d ", px(i), py(*series[k].second[i]));
      absl::StrAppendFormat(&s, "<circle cx=\"%d\" cy=\"%d\" r=\"3\" class=\"%s\"/>", px(i),
                            py(*series[k].second[i]), classes[k % 4]);
    }
    absl::StrAppendFormat(&s, "<polyline points=\"%s\" class=\"line %s\"/>", points, classes[k % 4]);
    absl::StrAppendFormat(&s, "<text x=\"%d\" y=\"%d\" class=\"legend %s\">%s</text>", left + 8 + 150 * static_cast<int>(k),
                          top + 12, classes[k % 4], Esc(series[k].first));
  }
  return s + "</svg>";
}

constexpr char kStyle[] = R"css(
@page { size: A4 landscape; margin: 12mm; }
body { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif;
       font-size: 10.5pt; color: #111; margin: 0 auto; max-width: 270mm; }
h1 { font-size: 17pt; margin: 4mm 0 2mm; }
h2 { font-size: 13pt; margin: 6mm 0 2mm; border-bottom: 1px solid #999; break-after: avoid; }
h3 { font-size: 11pt; margin: 3mm 0 1mm; break-after: avoid; }
table { border-collapse: collapse; margin: 1mm 0 3mm; break-inside: auto; }
tr { break-inside: avoid; }
th, td { border: 1px solid #bbb; padding: 1px 5px; text-align: right; }
th { background: #eee; }
td.l, th.l { text-align: left; }
.below { background: #f8d7d7; }
.meta td { border: none; text-align: left; padding: 0 8px 0 0; }
.chart { display: block; margin: 1mm 0 3mm; break-inside: avoid; }
.chart .grid { stroke: #ddd; stroke-width: 1; }
.chart .axis, .chart .label, .chart .value, .chart .legend { font-size: 10px; fill: #333; }
.chart .bar { fill: #4a7ab7; }
.chart .bar.below { fill: #c0504d; }
.chart .target { stroke: #000; stroke-width: 2; }
.chart .dashed { stroke-dasharray: 4 3; stroke-width: 1; }
.chart .line { fill: none; stroke-width: 2; }
.chart .s0 { stroke: #4a7ab7; fill: #4a7ab7; } .chart polyline.s0 { fill: none; }
.chart .s1 { stroke: #c0504d; fill: #c0504d; } .chart polyline.s1 { fill: none; }
.chart .s2 { stroke: #9bbb59; fill: #9bbb59; } .chart polyline.s2 { fill: none; }
.chart .s3 { stroke: #8064a2; fill: #8064a2; } .chart polyline.s3 { fill: none; }
.grid2 { display: flex; flex-wrap: wrap; gap: 4mm; }
section { break-inside: auto; }
ul.items { columns: 3; font-family: monospace; font-size: 9pt; margin: 0; }
@media print { h2 { break-before: auto; } .pagebreak { break-before: page; } }
)css";

}  // namespace

std::string RegionName(const std::string& code) {
  auto it = RegionNames().find(code);
  return it == RegionNames().end() ? "" : it->second;
}

std::vector<std::string> PreviousPeriods(const common::Policy& policy,
                                         const common::ReportingPeriod& period, int n) {
  std::vector<std::string> out;
  common::ReportingPeriod p = period;
  for (int i = 0; i < n; ++i) {
    p = policy.PeriodOf(p.first - 1);
    out.push_back(p.label);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string RenderHtml(const v1::AssessmentReport& report,
                       const std::vector<v1::AssessmentReport>& previous,
                       const HtmlOptions& options) {
  const Text t(options.lang != "en");
  const std::string& level = options.level;
  std::string h;
  absl::StrAppend(&h, "<!DOCTYPE html>\n<html lang=\"", options.lang == "en" ? "en" : "zh-CN",
                  "\"><head><meta charset=\"utf-8\"><title>", t("title"), " ", Esc(report.period()),
                  "</title><style>", kStyle, "</style></head><body>\n");
  absl::StrAppend(&h, "<h1>", t("title"), "</h1>\n<table class=\"meta\">");
  absl::StrAppendFormat(&h, "<tr><td>%s</td><td id=\"period\">%s (%04d-%02d-%02d … %04d-%02d-%02d)</td></tr>",
                        t("period"), Esc(report.period()), report.first_day().year(),
                        report.first_day().month(), report.first_day().day(),
                        report.last_day().year(), report.last_day().month(), report.last_day().day());
  absl::StrAppend(&h, "<tr><td>", t("policy"), "</td><td>", Esc(report.policy_version()), " (sha256 ",
                  Esc(report.policy_digest().substr(0, 16)), "…)</td></tr>");
  std::vector<std::string> places;
  for (const auto& n : report.nodes()) places.push_back(Place(n));
  absl::StrAppend(&h, "<tr><td>", t("nodes"), "</td><td>", absl::StrJoin(places, "; "), "</td></tr>");
  absl::StrAppend(&h, "<tr><td>", t("cutoff"), "</td><td>", Cst(report.cutoff()), " CST</td></tr>");
  absl::StrAppend(&h, "<tr><td>", t("generated"), "</td><td>", Cst(report.generated_at()),
                  " CST · ", t("level_" + level), "</td></tr></table>\n");

  // Summary by scope.
  absl::StrAppend(&h, "<h2>", t("summary"), "</h2>\n<table id=\"totals\"><tr><th class=\"l\">",
                  t("indicator"), "</th><th class=\"l\">", t("scored"), "</th><th class=\"l\">",
                  t("scope"), "</th><th>", t("num"), "</th><th>", t("den"), "</th><th>", t("rate"),
                  "</th><th>", t("target"), "</th><th class=\"l\">", t("status"), "</th></tr>\n");
  for (const Indicator& i : report.totals()) {
    const std::string scope = i.scope() == v1::SCOPE_INTER_PROVINCE ? "inter" : "intra";
    absl::StrAppendFormat(
        &h,
        "<tr class=\"%s\" data-indicator=\"%s\" data-scope=\"%s\" data-num=\"%d\" data-den=\"%d\">"
        "<td class=\"l\">%s</td><td class=\"l\">%s</td><td class=\"l\">%s</td><td>%d</td><td>%d</td>"
        "<td>%s</td><td>%s</td><td class=\"l\">%s%s</td></tr>\n",
        i.below_target() ? "below" : "", i.indicator(), scope, i.numerator(), i.denominator(),
        t(i.indicator()), t(i.scored()), t(scope), i.numerator(), i.denominator(), Pct(i.rate()),
        Pct(i.target()), i.below_target() ? t("below") : t("ok"),
        i.clock_marked() > 0 ? absl::StrCat(" · ", t("clock"), " ", i.clock_marked()) : "");
  }
  if (report.totals_size() == 0) absl::StrAppend(&h, "<tr><td colspan=\"8\" class=\"l\">", t("no_data"), "</td></tr>");
  absl::StrAppend(&h, "</table>\n");

  // Pairs at the chosen level.
  const auto pairs = Pairs(report, level);
  absl::StrAppend(&h, "<h2>", t("pairs"), "</h2>\n<table id=\"pairs\"><tr><th class=\"l\">",
                  t("indicator"), "</th><th class=\"l\">", t("from"), "</th><th class=\"l\">",
                  t("to"), "</th><th class=\"l\">", t("scope"), "</th><th>", t("num"), "</th><th>",
                  t("den"), "</th><th>", t("rate"), "</th><th>", t("target"), "</th><th class=\"l\">",
                  t("status"), "</th></tr>\n");
  for (const char* ind : {"receipt_rate", "feedback_rate", "timely_feedback_rate", "notification_timeliness"}) {
    for (const auto& [k, c] : pairs) {
      if (std::get<0>(k) != ind) continue;
      const std::string scope = c.scope == v1::SCOPE_INTER_PROVINCE ? "inter" : "intra";
      absl::StrAppendFormat(
          &h,
          "<tr class=\"%s\" data-indicator=\"%s\" data-origin=\"%s\" data-destination=\"%s\" "
          "data-num=\"%d\" data-den=\"%d\"><td class=\"l\">%s</td><td class=\"l\">%s</td>"
          "<td class=\"l\">%s</td><td class=\"l\">%s</td><td>%d</td><td>%d</td><td>%s</td>"
          "<td>%s</td><td class=\"l\">%s%s</td></tr>\n",
          c.below() ? "below" : "", ind, std::get<1>(k), std::get<2>(k), c.num, c.den, t(ind),
          Place(std::get<1>(k)), Place(std::get<2>(k)), t(scope), c.num, c.den, Pct(c.rate()),
          Pct(c.target), c.below() ? t("below") : t("ok"),
          c.clock > 0 ? absl::StrCat(" · ", t("clock"), " ", c.clock) : "");
    }
  }
  absl::StrAppend(&h, "</table>\n");

  // A chart per indicator.
  absl::StrAppend(&h, "<h2 class=\"pagebreak\">", t("charts"), "</h2>\n");
  for (const char* ind : {"receipt_rate", "feedback_rate", "timely_feedback_rate", "notification_timeliness"}) {
    std::vector<std::pair<std::string, Cell>> rows;
    for (const auto& [k, c] : pairs) {
      if (std::get<0>(k) == ind) rows.push_back({absl::StrCat(std::get<1>(k), " → ", std::get<2>(k)), c});
    }
    absl::StrAppend(&h, "<h3>", t(ind), "</h3>\n");
    if (rows.empty()) {
      absl::StrAppend(&h, "<p>", t("no_data"), "</p>\n");
    } else {
      absl::StrAppend(&h, Bars(rows, t), "\n");
    }
  }

  // Matrices.
  absl::StrAppend(&h, "<h2>", t("matrix"), "</h2>\n");
  std::set<std::string> origins, dests;
  for (const auto& [k, c] : pairs) {
    origins.insert(std::get<1>(k));
    dests.insert(std::get<2>(k));
  }
  for (const char* ind : {"receipt_rate", "feedback_rate", "timely_feedback_rate", "notification_timeliness"}) {
    absl::StrAppend(&h, "<h3>", t(ind), "</h3>\n<table class=\"matrix\" data-indicator=\"", ind,
                    "\"><tr><th class=\"l\">", t("from"), " \\ ", t("to"), "</th>");
    for (const auto& d : dests) absl::StrAppend(&h, "<th>", Esc(d), "</th>");
    absl::StrAppend(&h, "</tr>\n");
    for (const auto& o : origins) {
      absl::StrAppend(&h, "<tr><th class=\"l\">", Place(o), "</th>");
      for (const auto& d : dests) {
        auto it = pairs.find({ind, o, d});
        if (it == pairs.end() || it->second.den == 0) {
          absl::StrAppend(&h, "<td>–</td>");
        } else {
          absl::StrAppendFormat(&h, "<td class=\"%s\">%s<br><small>%d/%d</small></td>",
                                it->second.below() ? "below" : "", Pct(it->second.rate()),
                                it->second.num, it->second.den);
        }
      }
      absl::StrAppend(&h, "</tr>\n");
    }
    absl::StrAppend(&h, "</table>\n");
  }

  // Trend over the last 12 periods (scope totals).
  std::vector<const v1::AssessmentReport*> all;
  for (const auto& p : previous) all.push_back(&p);
  all.push_back(&report);
  std::vector<std::string> labels;
  for (const auto* r : all) labels.push_back(r->period());
  absl::StrAppend(&h, "<h2 class=\"pagebreak\">", t("trend"), "</h2>\n<div class=\"grid2\">\n");
  for (const char* ind : {"receipt_rate", "feedback_rate", "timely_feedback_rate", "notification_timeliness"}) {
    std::vector<std::pair<std::string, std::vector<std::optional<double>>>> series;
    double target = 0;
    for (v1::Scope scope : {v1::SCOPE_INTRA_PROVINCE, v1::SCOPE_INTER_PROVINCE}) {
      std::vector<std::optional<double>> values;
      for (const auto* r : all) {
        std::optional<double> v;
        for (const Indicator& i : r->totals()) {
          if (i.indicator() == ind && i.scope() == scope && i.denominator() > 0) {
            v = i.rate();
            target = std::max(target, i.target());
          }
        }
        values.push_back(v);
      }
      series.push_back({t(scope == v1::SCOPE_INTRA_PROVINCE ? "intra" : "inter"), values});
    }
    absl::StrAppend(&h, "<div><h3>", t(ind), "</h3>", Lines(labels, series, target, true, 100), "</div>\n");
  }
  absl::StrAppend(&h, "</div>\n");

  // Items counted against each office.
  absl::StrAppend(&h, "<h2>", t("overdue"), "</h2>\n");
  std::map<std::string, std::vector<const v1::AssessmentReport::Detail*>> by_office;
  for (const auto& d : report.details()) {
    const std::string office = d.indicator() == "notification_timeliness" ? d.origin() : d.destination();
    by_office[office].push_back(&d);
  }
  if (by_office.empty()) absl::StrAppend(&h, "<p>", t("none"), "</p>\n");
  for (const auto& [office, items] : by_office) {
    absl::StrAppend(&h, "<h3 data-office=\"", Esc(office), "\">", Place(office), " (", items.size(),
                    ")</h3>\n<ul class=\"items\">");
    // A page to read, not a dump: the first items; `--details` lists them all.
    constexpr size_t kShown = 200;
    for (size_t i = 0; i < items.size() && i < kShown; ++i) {
      const auto* d = items[i];
      absl::StrAppend(&h, "<li>", Esc(d->notice_id()), " — ", t(d->problem()), " (", Esc(d->origin()),
                      "→", Esc(d->destination()), ")</li>");
    }
    if (items.size() > kShown) {
      absl::StrAppend(&h, "<li class=\"more\">", t("more"), " ", items.size() - kShown,
                      " (caseway audit report --details)</li>");
    }
    absl::StrAppend(&h, "</ul>\n");
  }

  // Flow statistics.
  absl::StrAppend(&h, "<h2 class=\"pagebreak\">", t("flows"), "</h2>\n");
  std::map<std::pair<std::string, std::string>, std::map<std::string, uint64_t>> flows;
  std::set<std::string> kinds;
  for (const auto& f : report.flows()) {
    flows[{Aggregate(f.origin(), level), Aggregate(f.destination(), level)}][f.kind()] += f.count();
    kinds.insert(f.kind());
  }
  absl::StrAppend(&h, "<table id=\"flows\"><tr><th class=\"l\">", t("from"), "</th><th class=\"l\">", t("to"), "</th>");
  for (const auto& k : kinds) absl::StrAppend(&h, "<th>", t(k), "</th>");
  absl::StrAppend(&h, "<th>", t("total"), "</th></tr>\n");
  for (const auto& [pair, counts] : flows) {
    uint64_t total = 0;
    absl::StrAppend(&h, "<tr><td class=\"l\">", Place(pair.first), "</td><td class=\"l\">", Place(pair.second), "</td>");
    for (const auto& k : kinds) {
      auto it = counts.find(k);
      const uint64_t n = it == counts.end() ? 0 : it->second;
      total += n;
      absl::StrAppendFormat(&h, "<td data-kind=\"%s\">%d</td>", Esc(k), n);
    }
    absl::StrAppendFormat(&h, "<td>%d</td></tr>\n", total);
  }
  if (flows.empty()) absl::StrAppend(&h, "<tr><td colspan=\"3\" class=\"l\">", t("no_data"), "</td></tr>");
  absl::StrAppend(&h, "</table>\n<h3>", t("flow_trend"), "</h3>\n");
  {
    std::vector<std::pair<std::string, std::vector<std::optional<double>>>> series;
    double max_value = 0;
    for (const char* k : {"residence_change.arrival", "residence_change.departure", ""}) {
      std::vector<std::optional<double>> values;
      for (const auto* r : all) {
        double n = 0;
        for (const auto& f : r->flows()) {
          if (*k == '\0' || f.kind() == k) n += static_cast<double>(f.count());
        }
        max_value = std::max(max_value, n);
        values.push_back(n);
      }
      series.push_back({*k == '\0' ? t("total") : t(k), values});
    }
    absl::StrAppend(&h, Lines(labels, series, 0, false, max_value), "\n");
  }

  if (report.notes_size() > 0) {
    absl::StrAppend(&h, "<h2>", t("notes"), "</h2>\n<ul>");
    for (const auto& n : report.notes()) absl::StrAppend(&h, "<li>", Esc(n), "</li>");
    absl::StrAppend(&h, "</ul>\n");
  }
  absl::StrAppend(&h, "</body></html>\n");
  return h;
}

}  // namespace caseway::cli
