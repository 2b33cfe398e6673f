#include "client/cli/conformance.h"

#include <google/protobuf/util/time_util.h>

#include <cstdio>
#include <functional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/policy.h"
#include "common/refusal.h"

namespace caseway::cli {

namespace v1 = caseway::v1;
using google::protobuf::util::TimeUtil;

namespace {

// A check's outcome: "" passes, anything else says what went wrong.
using Check = std::function<std::string()>;

std::string Describe(const absl::Status& s) {
  std::string reason = caseway::common::ReasonOf(s);
  return absl::StrCat(absl::StatusCodeToString(s.code()), reason.empty() ? "" : " ", reason, ": ",
                      s.message());
}

// TestNotice is a status_change about a test subject (placeholder identity number), which owes
// no reply: nothing lands on anyone's to-do list.
v1::Notice TestNotice(const std::string& id, const std::string& case_id, const std::string& dest,
                      absl::Time now) {
  v1::Notice n;
  n.set_notice_id(id);
  n.set_case_id(case_id);
  v1::Subject* s = n.mutable_subject();
  s->set_name("CONFORMANCE TEST");
  s->set_id_number("000000000000000000");
  s->set_sex(v1::SEX_FEMALE);
  s->mutable_birth_date()->set_year(1990);
  s->mutable_birth_date()->set_month(1);
  s->mutable_birth_date()->set_day(1);
  s->set_registered_region(dest);
  n.add_destinations(dest);
  *n.mutable_occurred_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(now));
  n.set_priority(v1::PRIORITY_NORMAL);
  v1::StatusChange* c = n.mutable_status_change();
  c->set_new_state(v1::StatusChange::CASE_STATE_FLOATING);
  const absl::CivilDay day = caseway::common::DayOf(now);
  c->mutable_effective_date()->set_year(static_cast<int>(day.year()));
  c->mutable_effective_date()->set_month(day.month());
  c->mutable_effective_date()->set_day(day.day());
  c->set_reason("caseway conformance");
  return n;
}

}  // namespace

int RunConformance(caseway::client::Client& client, const ConformanceFlags& f) {
  const absl::Time now = absl::Now();
  const absl::Duration timeout = absl::Seconds(f.timeout_seconds);
  std::string self;
  // Unique per run (to the microsecond): every run publishes new test notices.
  const std::string run = absl::FormatTime("%Y%m%dT%H%M%E6S", now, absl::UTCTimeZone());
  std::string case_id, id;
  v1::Notice notice;
  uint64_t seq = 0;

  std::vector<std::pair<std::string, Check>> checks = {
      {"connect", [&]() -> std::string {
         auto st = client.Status();
         if (!st.ok()) return Describe(st.status());
         self = st->jurisdiction();
         if (!st->halted().empty()) return absl::StrCat("the node halted: ", st->halted());
         case_id = absl::StrCat("conformance-", self, "-", run);
         id = case_id + "-1";
         notice = TestNotice(id, case_id, f.destination, now);
         return "";
       }},
      {"validate only", [&]() -> std::string {
         auto r = client.Publish(notice, /*validate_only=*/true);
         if (!r.ok()) return Describe(r.status());
         if (r->deliveries_size() != 0) return "validate_only returned deliveries";
         return "";
       }},
      {"publish", [&]() -> std::string {
         auto r = client.Publish(notice);
         if (!r.ok()) return Describe(r.status());
         if (r->duplicate()) return "the validate-only call stored the notice";
         if (r->deliveries_size() != 1 || r->deliveries(0).destination() != f.destination) {
           return "no delivery to the destination";
         }
         seq = r->deliveries(0).seq();
         return "";
       }},
      {"retry is idempotent", [&]() -> std::string {
         auto r = client.Publish(notice);
         if (!r.ok()) return Describe(r.status());
         if (!r->duplicate()) return "the same notice sent again was not reported duplicate";
         if (r->deliveries_size() != 1 || r->deliveries(0).seq() != seq) {
           return "the retry got other sequences than the original";
         }
         return "";
       }},
      {"other content, same id", [&]() -> std::string {
         v1::Notice other = notice;
         other.mutable_occurred_at()->set_nanos((other.occurred_at().nanos() + 1000) % 1000000000);
         auto r = client.Publish(other);
         if (r.ok()) return "accepted: a changed notice under a stored id must be refused";
         if (r.status().code() != absl::StatusCode::kAlreadyExists ||
             caseway::common::ReasonOf(r.status()) != "CONTENT_CONFLICT") {
           return absl::StrCat("expected ALREADY_EXISTS CONTENT_CONFLICT, got ", Describe(r.status()));
         }
         return "";
       }},
      {"bad fields are named", [&]() -> std::string {
         v1::Notice bad = TestNotice(case_id + "-bad", case_id, f.destination, now);
         bad.mutable_subject()->set_id_number("123");
         bad.clear_priority();
         auto r = client.PublishBatch({notice, bad}, /*validate_only=*/true);
         if (r.ok()) return "accepted a notice with two bad fields";
         std::set<std::string> fields;
         for (const auto& v : caseway::common::ViolationsOf(r.status())) fields.insert(v.field);
         if (r.status().code() != absl::StatusCode::kInvalidArgument ||
             caseway::common::ReasonOf(r.status()) != "INVALID_NOTICE" ||
             fields != std::set<std::string>{"notices[1].subject.id_number",
                                             "notices[1].priority"}) {
           return absl::StrCat("expected INVALID_ARGUMENT INVALID_NOTICE naming "
                               "notices[1].subject.id_number and notices[1].priority, got ",
                               Describe(r.status()), " [", absl::StrJoin(fields, ", "), "]");
         }
         return "";
       }},
      {"same id twice in a batch", [&]() -> std::string {
         v1::Notice twin = TestNotice(case_id + "-twin", case_id, f.destination, now);
         auto r = client.PublishBatch({twin, twin}, /*validate_only=*/true);
         if (r.ok()) return "accepted";
         if (caseway::common::ReasonOf(r.status()) != "DUPLICATE_IN_BATCH") {
           return absl::StrCat("expected DUPLICATE_IN_BATCH, got ", Describe(r.status()));
         }
         return "";
       }},
      {"round trip", [&]() -> std::string {
         // Delivered to the destination and receipted by it: the channel's acked position.
         const absl::Time deadline = absl::Now() + timeout;
         uint64_t acked = 0;
         while (absl::Now() < deadline) {
           auto st = client.Status();
           if (!st.ok()) return Describe(st.status());
           for (const auto& c : st->channels()) {
             if (c.destination() == f.destination) acked = c.acked();
           }
           if (acked >= seq) return "";
           absl::SleepFor(absl::Milliseconds(200));
         }
         return absl::StrCat(f.destination, " did not acknowledge seq ", seq, " within ",
                             f.timeout_seconds, " s (acknowledged: ", acked,
                             "); is it running and reachable?");
       }},
      {"case timeline", [&]() -> std::string {
         auto c = client.Case(case_id);
         if (!c.ok()) return Describe(c.status());
         if (c->events_size() != 1 || c->events(0).notice().notice_id() != id) {
           return "the test notice is not in its case";
         }
         if (c->events(0).deliveries_size() != 1 || !c->events(0).deliveries(0).receipted()) {
           return "the case does not show the receipt";
         }
         return "";
       }},
      {"inbox", [&]() -> std::string {
         // Read only (nothing acknowledged): the stream must reach caught_up.
         caseway::client::InboxOptions options;
         absl::Status s = client.Inbox(options, [](const v1::InboxItem&) { return true; });
         return s.ok() ? "" : Describe(s);
       }},
  };

  printf("caseway conformance: test notices to %s\n\n", f.destination.c_str());
  printf("%-26s %-6s %s\n", "CHECK", "RESULT", "DETAIL");
  int failed = 0;
  bool stop = false;
  for (const auto& [name, check] : checks) {
    if (stop) {
      printf("%-26s %-6s %s\n", name.c_str(), "SKIP", "an earlier check failed");
      continue;
    }
    std::string problem = check();
    if (!problem.empty()) {
      ++failed;
      // Without a connection or a stored notice, the later checks cannot run.
      stop = name == "connect" || name == "publish";
    }
    printf("%-26s %-6s %s\n", name.c_str(), problem.empty() ? "pass" : "FAIL", problem.c_str());
  }
  if (!case_id.empty()) printf("\ntest case: %s\n", case_id.c_str());
  printf("\n%s\n", failed == 0 ? "OK: every check passed"
                               : absl::StrCat(failed, " check(s) failed").c_str());
  return failed == 0 ? 0 : 1;
}

}  // namespace caseway::cli
