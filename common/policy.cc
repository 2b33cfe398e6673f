#include "common/policy.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdio>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/proto_bytes.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace caseway::common {
namespace {

using ::caseway::v1::FederationPolicy;
using ::caseway::v1::Scope;

constexpr const char* kKinds[] = {"residence_change", "verification_request", "check_report",
                                  "pregnancy",        "birth",
                                  "birth_service_registration",
                                  "certificate",      "technical_service",    "fee",
                                  "status_change",    "feedback",             "void"};

constexpr std::pair<const char*, absl::Weekday> kWeekdays[] = {
    {"monday", absl::Weekday::monday},     {"tuesday", absl::Weekday::tuesday},
    {"wednesday", absl::Weekday::wednesday}, {"thursday", absl::Weekday::thursday},
    {"friday", absl::Weekday::friday},     {"saturday", absl::Weekday::saturday},
    {"sunday", absl::Weekday::sunday}};

int WeekdayIndex(absl::string_view name) {
  for (size_t i = 0; i < 7; ++i) {
    if (name == kWeekdays[i].first) return static_cast<int>(i);
  }
  return -1;
}

absl::CivilDay ToDay(const v1::Date& d) { return absl::CivilDay(d.year(), d.month(), d.day()); }

bool ValidDate(const v1::Date& d) {
  if (d.year() < 1900 || d.year() > 2200 || d.month() < 1 || d.month() > 12 || d.day() < 1) {
    return false;
  }
  const absl::CivilDay day = ToDay(d);
  return day.year() == d.year() && day.month() == d.month() && day.day() == d.day();
}

std::string DateText(const v1::Date& d) {
  return absl::StrFormat("%04d-%02d-%02d", d.year(), d.month(), d.day());
}

auto DateKey(const v1::Date& d) { return std::make_tuple(d.year(), d.month(), d.day()); }

// Checker collects the first error with its field path.
class Checker {
 public:
  explicit Checker(absl::string_view source) : source_(source) {}
  void Fail(const std::string& field, const std::string& rule) {
    if (error_.empty()) error_ = absl::StrCat(source_, ": ", field, ": ", rule);
  }
  void Days(const std::string& field, uint32_t v, uint32_t min) {
    if (v < min || v > 366) Fail(field, absl::StrCat(v, " is not in ", min, "..366"));
  }
  absl::Status status() const {
    return error_.empty() ? absl::OkStatus() : absl::InvalidArgumentError(error_);
  }

 private:
  std::string source_;
  std::string error_;
};

void FillDefaults(FederationPolicy& p) {
  if (p.default_receipt_days() == 0) p.set_default_receipt_days(3);
  if (p.default_notify_days() == 0) p.set_default_notify_days(30);
  if (p.period().unit() == FederationPolicy::Period::UNIT_UNSPECIFIED) {
    p.mutable_period()->set_unit(FederationPolicy::Period::UNIT_MONTH);
  }
  if (p.calendar().weekend_size() == 0) {
    p.mutable_calendar()->add_weekend("saturday");
    p.mutable_calendar()->add_weekend("sunday");
  }
}

// Normalize orders every list so that the digest depends on the rules, not on how the file
// happened to list them.
void Normalize(FederationPolicy& p) {
  auto* rules = p.mutable_rules();
  std::sort(rules->begin(), rules->end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.kind(), static_cast<int>(a.priority())) <
           std::make_pair(b.kind(), static_cast<int>(b.priority()));
  });
  auto* targets = p.mutable_targets();
  std::sort(targets->begin(), targets->end(),
            [](const auto& a, const auto& b) { return a.year() < b.year(); });
  auto* cal = p.mutable_calendar();
  for (auto& w : *cal->mutable_weekend()) w = absl::AsciiStrToLower(w);
  std::sort(cal->mutable_weekend()->begin(), cal->mutable_weekend()->end(),
            [](const std::string& a, const std::string& b) {
              return WeekdayIndex(a) < WeekdayIndex(b);
            });
  for (auto* dates : {cal->mutable_holidays(), cal->mutable_workdays()}) {
    std::sort(dates->begin(), dates->end(),
              [](const auto& a, const auto& b) { return DateKey(a) < DateKey(b); });
  }
  for (auto& o : *p.mutable_scope_overrides()) {
    if (o.b() < o.a()) std::swap(*o.mutable_a(), *o.mutable_b());
  }
  std::sort(p.mutable_scope_overrides()->begin(), p.mutable_scope_overrides()->end(),
            [](const auto& x, const auto& y) {
              return std::make_pair(x.a(), x.b()) < std::make_pair(y.a(), y.b());
            });
}

absl::Status Validate(const FederationPolicy& p, absl::string_view source) {
  Checker c(source);
  if (p.version().empty() || p.version().size() > 64) c.Fail("version", "1..64 characters required");
  std::set<std::pair<std::string, int>> seen_rules;
  for (int i = 0; i < p.rules_size(); ++i) {
    const auto& r = p.rules(i);
    const std::string at = absl::StrCat("rules[", i, "]");
    if (std::find(std::begin(kKinds), std::end(kKinds), r.kind()) == std::end(kKinds)) {
      c.Fail(at + ".kind", absl::StrCat(Echo(r.kind()),
                                        " is not a notice kind (residence_change, "
                                        "verification_request, ..., feedback, void)"));
    }
    if (!v1::Priority_IsValid(r.priority())) c.Fail(at + ".priority", "not a Priority");
    if (!seen_rules.insert({r.kind(), static_cast<int>(r.priority())}).second) {
      c.Fail(at, absl::StrCat("a second rule for ", r.kind(), " and ",
                              v1::Priority_Name(r.priority())));
    }
    if (r.has_reply()) c.Days(at + ".reply.days", r.reply().days(), 1);
    c.Days(at + ".receipt_days", r.receipt_days(), 0);
    c.Days(at + ".notify_days", r.notify_days(), 0);
  }
  c.Days("default_receipt_days", p.default_receipt_days(), 1);
  c.Days("default_notify_days", p.default_notify_days(), 1);
  if (p.targets_size() == 0) c.Fail("targets", "at least one target required");
  for (int i = 0; i < p.targets_size(); ++i) {
    const auto& t = p.targets(i);
    const std::string at = absl::StrCat("targets[", i, "]");
    if (t.year() < 2000 || t.year() > 2200) c.Fail(at + ".year", absl::StrCat(t.year(), " is not in 2000..2200"));
    if (i > 0 && p.targets(i - 1).year() == t.year()) c.Fail(at + ".year", absl::StrCat(t.year(), " appears twice"));
    for (auto [name, v] : {std::pair{"intra_province", t.intra_province()},
                           std::pair{"inter_province", t.inter_province()}}) {
      if (!(v >= 0 && v <= 100)) c.Fail(absl::StrCat(at, ".", name), absl::StrCat(v, " is not a percentage in 0..100"));
    }
  }
  if (!FederationPolicy::Period::Unit_IsValid(p.period().unit())) c.Fail("period.unit", "not a Unit");
  if (p.period().cutoff_day() > 28) {
    c.Fail("period.cutoff_day", absl::StrCat(p.period().cutoff_day(), " is not in 0..28 (0: the end of the month)"));
  }
  const auto& cal = p.calendar();
  std::set<int> weekend;
  for (int i = 0; i < cal.weekend_size(); ++i) {
    const int d = WeekdayIndex(cal.weekend(i));
    if (d < 0) {
      c.Fail(absl::StrCat("calendar.weekend[", i, "]"), absl::StrCat(Echo(cal.weekend(i)), " is not a day of the week (monday..sunday)"));
    } else if (!weekend.insert(d).second) {
      c.Fail(absl::StrCat("calendar.weekend[", i, "]"), absl::StrCat(cal.weekend(i), " appears twice"));
    }
  }
  if (weekend.size() == 7) c.Fail("calendar.weekend", "leaves no working day in the week");
  std::set<std::tuple<int, int, int>> holidays;
  for (int i = 0; i < cal.holidays_size(); ++i) {
    const std::string at = absl::StrCat("calendar.holidays[", i, "]");
    if (!ValidDate(cal.holidays(i))) {
      c.Fail(at, absl::StrCat(DateText(cal.holidays(i)), " is not a valid date (1900..2200)"));
    } else if (!holidays.insert(DateKey(cal.holidays(i))).second) {
      c.Fail(at, absl::StrCat(DateText(cal.holidays(i)), " appears twice"));
    }
  }
  std::set<std::tuple<int, int, int>> workdays;
  for (int i = 0; i < cal.workdays_size(); ++i) {
    const std::string at = absl::StrCat("calendar.workdays[", i, "]");
    const auto& d = cal.workdays(i);
    if (!ValidDate(d)) {
      c.Fail(at, absl::StrCat(DateText(d), " is not a valid date (1900..2200)"));
    } else if (!workdays.insert(DateKey(d)).second) {
      c.Fail(at, absl::StrCat(DateText(d), " appears twice"));
    } else if (holidays.count(DateKey(d)) > 0) {
      c.Fail(at, absl::StrCat(DateText(d), " is also listed as a holiday"));
    } else {
      const absl::Weekday wd = absl::GetWeekday(ToDay(d));
      bool is_weekend = false;
      for (int w : weekend) is_weekend |= kWeekdays[w].second == wd;
      if (!is_weekend) c.Fail(at, absl::StrCat(DateText(d), " is a weekday already (make-up working days fall on the weekend)"));
    }
  }
  std::set<std::pair<std::string, std::string>> pairs;
  for (int i = 0; i < p.scope_overrides_size(); ++i) {
    const auto& o = p.scope_overrides(i);
    const std::string at = absl::StrCat("scope_overrides[", i, "]");
    for (auto [name, code] : {std::pair{"a", &o.a()}, std::pair{"b", &o.b()}}) {
      if (absl::Status s = ValidateRegionCode(*code); !s.ok()) {
        c.Fail(absl::StrCat(at, ".", name), std::string(s.message()));
      }
    }
    if (o.a() == o.b()) c.Fail(at + ".b", "must differ from a");
    if (o.scope() == v1::SCOPE_UNSPECIFIED || !v1::Scope_IsValid(o.scope())) {
      c.Fail(at + ".scope", "required: SCOPE_INTRA_PROVINCE or SCOPE_INTER_PROVINCE");
    }
    if (!pairs.insert({o.a(), o.b()}).second) c.Fail(at, absl::StrCat(o.a(), " and ", o.b(), " appear twice"));
  }
  return c.status();
}

FederationPolicy::Limit Days(uint32_t n, bool working = false) {
  FederationPolicy::Limit l;
  l.set_days(n);
  l.set_working_days(working);
  return l;
}

FederationPolicy DefaultProto() {
  // docs/policy.md, "The built-in policy" (the defaults of the domain design: Deadlines).
  FederationPolicy p;
  p.set_version("caseway-default-1");
  auto rule = [&p](const char* kind, v1::Priority priority, std::optional<FederationPolicy::Limit> reply) {
    auto* r = p.add_rules();
    r->set_kind(kind);
    r->set_priority(priority);
    if (reply) *r->mutable_reply() = *reply;
  };
  rule("verification_request", v1::PRIORITY_SUBJECT, Days(15));
  rule("verification_request", v1::PRIORITY_UNSPECIFIED, Days(30));
  rule("residence_change", v1::PRIORITY_UNSPECIFIED, Days(30));
  rule("birth", v1::PRIORITY_UNSPECIFIED, Days(30));
  rule("fee", v1::PRIORITY_UNSPECIFIED, Days(30));
  rule("birth_service_registration", v1::PRIORITY_UNSPECIFIED, Days(15, /*working=*/true));
  auto* t = p.add_targets();
  t->set_year(2026);
  t->set_intra_province(85);
  t->set_inter_province(80);
  t = p.add_targets();
  t->set_year(2027);
  t->set_intra_province(85);
  t->set_inter_province(85);
  return p;
}

}  // namespace

std::string NoticeKind(const v1::Notice& notice) {
  const auto* oneof = v1::Notice::descriptor()->FindOneofByName("body");
  const auto* field = notice.GetReflection()->GetOneofFieldDescriptor(notice, oneof);
  return field == nullptr ? "" : field->name();
}

absl::TimeZone ChinaStandardTime() {
  // Loaded once: absl::FixedTimeZone formats the zone's name and looks it up in a table under a
  // lock on every call, which every notice's deadline paid (PROFILE.md, 2026-12-02).
  static const absl::TimeZone kCst = absl::FixedTimeZone(8 * 3600);
  return kCst;
}

absl::CivilDay DayOf(absl::Time t) { return absl::ToCivilDay(t, ChinaStandardTime()); }

absl::Time EndOfDay(absl::CivilDay day) {
  return absl::FromCivil(day + 1, ChinaStandardTime()) - absl::Seconds(1);
}

absl::Time ReportingPeriod::begin() const { return absl::FromCivil(first, ChinaStandardTime()); }
absl::Time ReportingPeriod::end() const { return absl::FromCivil(last + 1, ChinaStandardTime()); }

const Policy& Policy::Default() {
  static const Policy* const kDefault = [] {
    auto p = FromProto(DefaultProto(), "built-in policy");
    if (!p.ok()) std::abort();  // the built-in policy is checked by policy_test
    return new Policy(std::move(*p));
  }();
  return *kDefault;
}

absl::StatusOr<Policy> Policy::Parse(absl::string_view yaml, absl::string_view source) {
  FederationPolicy proto;
  RETURN_IF_ERROR(ParseYamlInto(yaml, source, &proto));
  return FromProto(std::move(proto), source);
}

absl::StatusOr<Policy> Policy::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return Parse(text, path);
}

absl::StatusOr<Policy> Policy::FromProto(FederationPolicy proto, absl::string_view source) {
  FillDefaults(proto);
  Normalize(proto);
  RETURN_IF_ERROR(Validate(proto, source));
  Policy p;
  p.proto_ = std::move(proto);
  p.digest_ = Sha256(DeterministicBytes(p.proto_));
  p.Index();
  return p;
}

void Policy::Index() {
  for (const auto& r : proto_.rules()) rules_[{r.kind(), static_cast<int>(r.priority())}] = r;
  for (const auto& d : proto_.calendar().holidays()) holidays_.insert(ToDay(d));
  for (const auto& d : proto_.calendar().workdays()) workdays_.insert(ToDay(d));
  for (const auto& w : proto_.calendar().weekend()) weekend_.insert(kWeekdays[WeekdayIndex(w)].second);
  for (const auto& o : proto_.scope_overrides()) overrides_[{o.a(), o.b()}] = o.scope();
}

std::string Policy::DigestHex() const { return ToHex(digest_); }

Policy::Terms Policy::TermsFor(absl::string_view kind, v1::Priority priority) const {
  Terms t;
  t.receipt_days = proto_.default_receipt_days();
  t.notify_days = proto_.default_notify_days();
  auto it = rules_.find({std::string(kind), static_cast<int>(priority)});
  if (it == rules_.end()) it = rules_.find({std::string(kind), v1::PRIORITY_UNSPECIFIED});
  if (it == rules_.end()) return t;
  const auto& r = it->second;
  if (r.has_reply()) t.reply = r.reply();
  if (r.receipt_days() > 0) t.receipt_days = r.receipt_days();
  if (r.notify_days() > 0) t.notify_days = r.notify_days();
  return t;
}

std::optional<absl::Time> Policy::ReplyDue(const v1::Notice& notice, absl::Time opened) const {
  Terms t = TermsFor(notice);
  if (!t.reply) return std::nullopt;
  return EndOfDay(DueDay(DayOf(opened), *t.reply));
}

bool Policy::IsWorkingDay(absl::CivilDay day) const {
  if (holidays_.count(day) > 0) return false;
  if (workdays_.count(day) > 0) return true;
  return weekend_.count(absl::GetWeekday(day)) == 0;
}

absl::CivilDay Policy::DueDay(absl::CivilDay start, const FederationPolicy::Limit& limit) const {
  if (!limit.working_days()) return start + limit.days();
  absl::CivilDay d = start;
  for (uint32_t left = limit.days(); left > 0;) {
    ++d;
    if (IsWorkingDay(d)) --left;
  }
  return d;
}

int Policy::WorkingDaysLeft(absl::CivilDay today, absl::CivilDay due) const {
  int n = 0;
  if (due >= today) {
    for (absl::CivilDay d = today + 1; d <= due; ++d) n += IsWorkingDay(d) ? 1 : 0;
    return n;
  }
  for (absl::CivilDay d = due + 1; d <= today; ++d) n += IsWorkingDay(d) ? 1 : 0;
  return -std::max(n, 1);  // past due counts at least one
}

Scope Policy::ScopeOf(absl::string_view a, absl::string_view b) const {
  std::string x(a), y(b);
  if (y < x) std::swap(x, y);
  if (auto it = overrides_.find({x, y}); it != overrides_.end()) return it->second;
  return x.substr(0, 2) == y.substr(0, 2) ? v1::SCOPE_INTRA_PROVINCE : v1::SCOPE_INTER_PROVINCE;
}

double Policy::Target(int year, Scope scope) const {
  const FederationPolicy::Target* found = &proto_.targets(0);
  for (const auto& t : proto_.targets()) {
    if (t.year() <= year) found = &t;
  }
  return scope == v1::SCOPE_INTER_PROVINCE ? found->inter_province() : found->intra_province();
}

ReportingPeriod Policy::PeriodOf(absl::CivilDay day) const {
  const int cutoff = static_cast<int>(proto_.period().cutoff_day());
  absl::CivilMonth month(day);
  if (cutoff > 0 && day.day() > cutoff) month += 1;  // after the cut-off: next month's period
  const bool quarter = proto_.period().unit() == FederationPolicy::Period::UNIT_QUARTER;
  absl::CivilMonth last_month = month;
  absl::CivilMonth first_month = month;
  std::string label = absl::StrFormat("%04d-%02d", month.year(), month.month());
  if (quarter) {
    const int q = (month.month() - 1) / 3;  // 0..3
    first_month = absl::CivilMonth(month.year(), q * 3 + 1);
    last_month = first_month + 2;
    label = absl::StrFormat("%04d-Q%d", month.year(), q + 1);
  }
  ReportingPeriod p;
  p.label = label;
  if (cutoff == 0) {
    p.first = absl::CivilDay(first_month);
    p.last = absl::CivilDay(last_month + 1) - 1;
  } else {
    const absl::CivilMonth before = first_month - 1;
    p.first = absl::CivilDay(before.year(), before.month(), cutoff) + 1;
    p.last = absl::CivilDay(last_month.year(), last_month.month(), cutoff);
  }
  return p;
}

absl::StatusOr<ReportingPeriod> Policy::PeriodNamed(absl::string_view label) const {
  const bool quarter = proto_.period().unit() == FederationPolicy::Period::UNIT_QUARTER;
  int year = 0, part = 0;
  char extra = 0;
  const std::string s(label);
  const bool ok = quarter ? std::sscanf(s.c_str(), "%4d-Q%1d%c", &year, &part, &extra) == 2 && part >= 1 && part <= 4
                          : std::sscanf(s.c_str(), "%4d-%2d%c", &year, &part, &extra) == 2 && part >= 1 && part <= 12;
  if (!ok || year < 2000 || year > 2200 || s.size() != (quarter ? 7u : 7u)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "period: ", Echo(label), " is not a ", quarter ? "quarter like 2026-Q4" : "month like 2026-10",
        " (the policy's period.unit)"));
  }
  const int month = quarter ? part * 3 : part;
  const int cutoff = static_cast<int>(proto_.period().cutoff_day());
  return PeriodOf(absl::CivilDay(year, month, cutoff == 0 ? 1 : cutoff));
}

}  // namespace caseway::common
