#include "common/validation.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "caseway/v1/notice.pb.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/policy.h"
#include "common/refusal.h"
#include "common/signing.h"

namespace caseway::common {
namespace {

using ::caseway::v1::Date;
using ::caseway::v1::Notice;

// Most items of one verification request.
constexpr int kMaxItems = 64;

// Province-level prefixes of GB/T 2260 (including 71 Taiwan, 81 Hong Kong, 82 Macao).
constexpr int kProvinces[] = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42,
                              43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82};

// Checker accumulates every violation (the first broken rule of each field), with field paths
// relative to a prefix.
class Checker {
 public:
  explicit Checker(std::string prefix) : prefix_(std::move(prefix)) {}

  bool ok() const { return violations_.empty(); }
  size_t failures() const { return violations_.size(); }
  // Every violation found, in field order; the reason is the first one's (docs/errors.md).
  absl::Status status() const { return ok() ? absl::OkStatus() : BadInput(reason_, violations_); }
  const std::vector<Violation>& violations() const { return violations_; }
  const std::string& reason() const { return reason_; }
  std::vector<std::string>& warnings() { return warnings_; }

  void Fail(absl::string_view field, absl::string_view rule) {
    FailAs("INVALID_NOTICE", field, rule);
  }
  void FailAs(absl::string_view reason, absl::string_view field, absl::string_view rule) {
    if (violations_.empty()) reason_ = std::string(reason);
    // A field fails once (its first broken rule), and a hostile notice cannot make the answer
    // unbounded.
    if (violations_.size() >= kMaxViolations) return;
    std::string path = absl::StrCat(prefix_, field);
    for (const auto& v : violations_) {
      if (v.field == path) return;
    }
    violations_.push_back({std::move(path), std::string(rule)});
  }
  void Warn(absl::string_view field, absl::string_view rule) {
    warnings_.push_back(absl::StrCat(prefix_, field, ": ", rule));
  }

  // Text checks a UTF-8 string's length in characters: min..max (min 0 = optional).
  void Text(absl::string_view field, absl::string_view value, size_t min, size_t max) {
    size_t chars = 0;
    for (unsigned char c : value) chars += (c & 0xC0) != 0x80;
    if (chars < min) {
      Fail(field, min == 1 ? "required" : absl::StrCat("at least ", min, " characters"));
    } else if (chars > max) {
      Fail(field, absl::StrCat("at most ", max, " characters"));
    }
  }
  // Key checks an identifier: 1..max characters of [A-Za-z0-9._:-].
  void Key(absl::string_view field, absl::string_view value, size_t max) {
    if (value.empty()) return Fail(field, "required");
    if (value.size() > max) return Fail(field, absl::StrCat("at most ", max, " characters"));
    for (char c : value) {
      if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
            c == ':' || c == '-')) {
        return Fail(field, "only letters, digits and . _ : - allowed");
      }
    }
  }
  void Region(absl::string_view field, absl::string_view code, bool required) {
    if (code.empty()) {
      if (required) Fail(field, "required");
      return;
    }
    absl::Status s = ValidateRegionCode(code);
    if (!s.ok()) Fail(field, s.message());
  }
  void Enum(absl::string_view field, int value, bool known) {
    if (value == 0) Fail(field, "required (must not be *_UNSPECIFIED)");
    else if (!known) Fail(field, absl::StrCat("unknown enum value ", value));
  }
  // Instant checks a timestamp: nanos in 0..999999999 and a time in the years 1900..2200 (the
  // range of every date in the contract); false when it failed.
  bool Instant(absl::string_view field, const google::protobuf::Timestamp& ts) {
    static const int64_t kMin =
        absl::ToUnixSeconds(absl::FromCivil(absl::CivilDay(1900, 1, 1), absl::UTCTimeZone()));
    static const int64_t kMax =
        absl::ToUnixSeconds(absl::FromCivil(absl::CivilDay(2201, 1, 1), absl::UTCTimeZone()));
    if (ts.nanos() < 0 || ts.nanos() > 999'999'999) {
      Fail(absl::StrCat(field, ".nanos"), "must be in 0..999999999");
      return false;
    }
    if (ts.seconds() < kMin || ts.seconds() >= kMax) {
      Fail(field, "must be in the years 1900..2200");
      return false;
    }
    return true;
  }
  void Range(absl::string_view field, int64_t value, int64_t min, int64_t max) {
    if (value < min || value > max) Fail(field, absl::StrCat("must be in ", min, "..", max));
  }
  // DateField checks a required/optional calendar date; not_future compares with `now`.
  void DateField(absl::string_view field, bool present, const Date& d, bool required,
                 absl::Time now, bool not_future) {
    if (!present) {
      if (required) Fail(field, "required");
      return;
    }
    if (d.year() < 1900 || d.year() > 2200) return Fail(field, "year must be in 1900..2200");
    if (d.month() < 1 || d.month() > 12) return Fail(field, "month must be in 1..12");
    absl::CivilDay day(d.year(), d.month(), d.day());
    if (d.day() < 1 || day.day() != d.day() || day.month() != d.month()) {
      return Fail(field, "not a valid calendar date");
    }
    if (not_future && now != absl::InfinitePast()) {
      absl::CivilDay today = DayOf(now);
      if (day > today) Fail(field, "must not be in the future");
    }
  }
  void IdNumber(absl::string_view field, absl::string_view id, bool required) {
    if (id.empty()) {
      if (required) Fail(field, "required");
      return;
    }
    if (id.size() != 18) return Fail(field, "18 characters expected (17 digits and a check character)");
    for (size_t i = 0; i < 17; ++i) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(id[i]))) {
        return Fail(field, "17 digits and a check character expected");
      }
    }
    char check = id[17];
    if (!absl::ascii_isdigit(static_cast<unsigned char>(check)) && check != 'X') {
      return Fail(field, "check character must be a digit or X");
    }
    if (id != "000000000000000000" && IdNumberCheckCharacter(id) != check) {
      Warn(field, absl::StrFormat("check character %c does not match (expected %c)", check,
                                  IdNumberCheckCharacter(id)));
    }
  }

 private:
  std::string prefix_;
  std::vector<Violation> violations_;
  std::string reason_;
  static constexpr size_t kMaxViolations = 100;
  std::vector<std::string> warnings_;
};

void CheckSubject(Checker& c, const v1::Subject& s, absl::Time now) {
  c.Text("subject.name", s.name(), 1, 64);
  c.IdNumber("subject.id_number", s.id_number(), true);
  c.Enum("subject.sex", s.sex(), v1::Sex_IsValid(s.sex()));
  c.DateField("subject.birth_date", s.has_birth_date(), s.birth_date(), true, now, true);
  c.Region("subject.registered_region", s.registered_region(), true);
  c.Region("subject.residence_region", s.residence_region(), false);
  c.Text("subject.residence_address", s.residence_address(), 0, 256);
  if (!v1::MaritalStatus_IsValid(s.marital_status())) {
    c.Fail("subject.marital_status", absl::StrCat("unknown enum value ", s.marital_status()));
  }
  c.Range("subject.living_children", s.living_children(), 0, 20);
}

void CheckBody(Checker& c, const Notice& n, absl::Time now) {
  switch (n.body_case()) {
    case Notice::kResidenceChange: {
      const auto& b = n.residence_change();
      c.Enum("residence_change.direction", b.direction(),
             v1::ResidenceChange::Direction_IsValid(b.direction()));
      c.DateField("residence_change.effective_date", b.has_effective_date(), b.effective_date(),
                  true, now, true);
      c.Region("residence_change.residence_region", b.residence_region(), true);
      c.Text("residence_change.residence_address", b.residence_address(), 0, 256);
      c.Text("residence_change.childbearing_status", b.childbearing_status(), 0, 256);
      break;
    }
    case Notice::kVerificationRequest: {
      const auto& b = n.verification_request();
      c.Text("verification_request.request_id", b.request_id(), 1, 64);
      if (b.items_size() == 0) c.Fail("verification_request.items", "at least one item required");
      if (b.items_size() > kMaxItems) {
        c.Fail("verification_request.items", absl::StrCat("at most ", kMaxItems, " items"));
      }
      for (int i = 0; i < b.items_size(); ++i) {
        c.Text(absl::StrCat("verification_request.items[", i, "]"), b.items(i), 1, 128);
      }
      c.Text("verification_request.remarks", b.remarks(), 0, 512);
      break;
    }
    case Notice::kCheckReport: {
      const auto& b = n.check_report();
      c.DateField("check_report.check_date", b.has_check_date(), b.check_date(), true, now, true);
      c.Enum("check_report.check_type", b.check_type(),
             v1::CheckReport::CheckType_IsValid(b.check_type()));
      c.Enum("check_report.result", b.result(), v1::CheckReport::Result_IsValid(b.result()));
      c.Text("check_report.method", b.method(), 0, 64);
      c.Text("check_report.service_unit", b.service_unit(), 1, 128);
      break;
    }
    case Notice::kPregnancy: {
      const auto& b = n.pregnancy();
      c.Enum("pregnancy.status", b.status(), v1::Pregnancy::Status_IsValid(b.status()));
      if (b.weeks() == 0 && !b.has_last_menstrual_period()) {
        c.Fail("pregnancy.weeks", "required unless last_menstrual_period is set");
      } else if (b.weeks() != 0) {
        c.Range("pregnancy.weeks", b.weeks(), 1, 45);
      }
      c.DateField("pregnancy.last_menstrual_period", b.has_last_menstrual_period(),
                  b.last_menstrual_period(), false, now, true);
      c.Range("pregnancy.parity", b.parity(), 1, 20);
      break;
    }
    case Notice::kBirth: {
      const auto& b = n.birth();
      c.Text("birth.child_name", b.child_name(), 1, 64);
      c.Enum("birth.child_sex", b.child_sex(), v1::Sex_IsValid(b.child_sex()));
      c.DateField("birth.birth_date", b.has_birth_date(), b.birth_date(), true, now, true);
      c.Range("birth.birth_order", b.birth_order(), 1, 20);
      c.Text("birth.place", b.place(), 1, 256);
      c.Text("birth.medical_certificate_number", b.medical_certificate_number(), 0, 32);
      break;
    }
    case Notice::kBirthServiceRegistration: {
      const auto& b = n.birth_service_registration();
      c.IdNumber("birth_service_registration.spouse_id_number", b.spouse_id_number(), true);
      c.Text("birth_service_registration.marriage_certificate_number",
             b.marriage_certificate_number(), 1, 32);
      c.Text("birth_service_registration.registration_number", b.registration_number(), 1, 32);
      c.DateField("birth_service_registration.registration_date", b.has_registration_date(),
                  b.registration_date(), true, now, true);
      c.Range("birth_service_registration.child_order", b.child_order(), 1, 20);
      break;
    }
    case Notice::kCertificate: {
      const auto& b = n.certificate();
      const size_t before = c.failures();
      c.Enum("certificate.action", b.action(), v1::Certificate::Action_IsValid(b.action()));
      c.Enum("certificate.type", b.type(), v1::Certificate::Type_IsValid(b.type()));
      c.Text("certificate.number", b.number(), 1, 32);
      c.DateField("certificate.valid_from", b.has_valid_from(), b.valid_from(), true, now, false);
      c.DateField("certificate.valid_until", b.has_valid_until(), b.valid_until(), true, now,
                  false);
      if (c.failures() == before) {
        const auto& f = b.valid_from();
        const auto& u = b.valid_until();
        if (absl::CivilDay(u.year(), u.month(), u.day()) <
            absl::CivilDay(f.year(), f.month(), f.day())) {
          c.Fail("certificate.valid_until", "must not be before valid_from");
        }
      }
      c.Text("certificate.contents", b.contents(), 0, 1024);
      break;
    }
    case Notice::kTechnicalService: {
      const auto& b = n.technical_service();
      c.Text("technical_service.procedure", b.procedure(), 1, 64);
      c.DateField("technical_service.service_date", b.has_service_date(), b.service_date(), true,
                  now, true);
      c.Text("technical_service.provider", b.provider(), 1, 128);
      break;
    }
    case Notice::kFee: {
      const auto& b = n.fee();
      c.Enum("fee.stage", b.stage(), v1::Fee::Stage_IsValid(b.stage()));
      c.Text("fee.decision_number", b.decision_number(), 1, 64);
      constexpr int64_t kMaxFen = 1'000'000'000'000;
      c.Range("fee.amount_fen", b.amount_fen(), 0, kMaxFen);
      c.Range("fee.collected_fen", b.collected_fen(), 0, kMaxFen);
      if (b.stage() == v1::Fee::STAGE_DECISION && b.amount_fen() == 0) {
        c.Fail("fee.amount_fen", "required (> 0) for a decision");
      }
      if (b.stage() == v1::Fee::STAGE_COLLECTION && b.collected_fen() == 0) {
        c.Fail("fee.collected_fen", "required (> 0) for a collection");
      }
      if (b.amount_fen() > 0 && b.collected_fen() > b.amount_fen()) {
        c.Fail("fee.collected_fen", "must not exceed amount_fen");
      }
      c.Region("fee.collecting_region", b.collecting_region(), true);
      break;
    }
    case Notice::kStatusChange: {
      const auto& b = n.status_change();
      c.Enum("status_change.new_state", b.new_state(),
             v1::StatusChange::CaseState_IsValid(b.new_state()));
      c.DateField("status_change.effective_date", b.has_effective_date(), b.effective_date(), true,
                  now, false);
      c.Text("status_change.reason", b.reason(), 0, 256);
      break;
    }
    case Notice::kFeedback: {
      const auto& b = n.feedback();
      c.Enum("feedback.outcome", b.outcome(), v1::Feedback::Outcome_IsValid(b.outcome()));
      if (n.in_reply_to().empty()) c.Fail("in_reply_to", "required for feedback");
      if (b.values_size() > 64) c.Fail("feedback.values", "at most 64 entries");
      const size_t before = c.failures();
      for (const auto& [key, value] : b.values()) {
        if (c.failures() != before) break;
        // The key is untrusted input: the field path quotes a bounded prefix of it.
        std::string field = absl::StrCat("feedback.values[", Echo(key), "]");
        c.Text(absl::StrCat(field, ".key"), key, 1, 64);
        c.Text(field, value, 0, 512);
      }
      if (b.outcome() == v1::Feedback::OUTCOME_CORRECTED && b.values_size() == 0) {
        c.Fail("feedback.values", "required when outcome is OUTCOME_CORRECTED");
      }
      c.Text("feedback.reason", b.reason(), b.outcome() == v1::Feedback::OUTCOME_REJECTED ? 1 : 0,
             512);
      break;
    }
    case Notice::kVoid: {
      if (n.in_reply_to().empty()) c.Fail("in_reply_to", "required for void");
      c.Text("void.reason", n.void_().reason(), 1, 512);
      break;
    }
    case Notice::BODY_NOT_SET:
      c.Fail("body", "exactly one kind is required (residence_change, verification_request, "
                     "check_report, pregnancy, birth, birth_service_registration, certificate, "
                     "technical_service, fee, status_change, feedback, void)");
      break;
  }
}

}  // namespace

absl::Status ValidateRegionCode(absl::string_view code) {
  if (code.size() != 6 && code.size() != 12) {
    return absl::InvalidArgumentError("region code of 6 or 12 digits expected");
  }
  for (char ch : code) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(ch))) {
      return absl::InvalidArgumentError("region code of 6 or 12 digits expected");
    }
  }
  int province = (code[0] - '0') * 10 + (code[1] - '0');
  for (int p : kProvinces) {
    if (p == province) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("region code: ", code.substr(0, 2), " is not a province-level code"));
}

absl::Status ValidateCaseKey(absl::string_view path, absl::string_view case_id,
                             absl::string_view id_number, bool either_key) {
  Checker c{std::string(path)};
  if (!either_key) {
    c.Key("case_id", case_id, 64);
  } else if (case_id.empty() == id_number.empty()) {
    c.Fail("case_id", "give exactly one of case_id and id_number");
  } else if (!case_id.empty()) {
    c.Key("case_id", case_id, 64);
  } else if (id_number == "000000000000000000") {
    c.Fail("id_number", "the placeholder names no one (it stands for an unknown number): ask by "
                        "case id");
  } else {
    c.IdNumber("id_number", id_number, true);
  }
  if (c.ok()) return absl::OkStatus();
  return BadInput("INVALID_REQUEST", c.violations());
}

void ValidatePurpose(absl::string_view field, absl::string_view purpose,
                     std::vector<Violation>* bad) {
  Checker c{""};
  c.Text(field, purpose, 1, 200);
  if (c.ok() && std::any_of(purpose.begin(), purpose.end(),
                            [](char ch) { return static_cast<unsigned char>(ch) < 0x20; })) {
    c.Fail(field, "text without control characters");
  }
  for (const Violation& v : c.violations()) {
    bad->push_back({v.field, v.description == "required"
                                 ? "required: why this person's data is read (e.g. \"residence "
                                   "verification\"), kept in the node's access log"
                                 : v.description});
  }
}

char IdNumberCheckCharacter(absl::string_view id) {
  static constexpr int kWeights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static constexpr char kChecks[] = "10X98765432";
  int sum = 0;
  for (int i = 0; i < 17; ++i) sum += (id[i] - '0') * kWeights[i];
  return kChecks[sum % 11];
}

absl::StatusOr<std::vector<std::string>> ValidateNotice(const Notice& n, const NoticeRules& rules,
                                                        absl::string_view path) {
  Checker c{std::string(path)};
  c.Key("notice_id", n.notice_id(), 128);
  c.Key("case_id", n.case_id(), 64);
  if (!n.has_subject()) {
    c.Fail("subject", "required");
  } else {
    CheckSubject(c, n.subject(), rules.now);
  }
  if (!n.origin().empty() && n.origin() != rules.self_jurisdiction) {
    c.Fail("origin", absl::StrCat("must be empty or this node's jurisdiction ",
                                  rules.self_jurisdiction, " (set from the certificate)"));
  }
  if (n.destinations_size() == 0) c.Fail("destinations", "at least one destination required");
  if (n.destinations_size() > 16) c.Fail("destinations", "at most 16 destinations");
  std::set<std::string> seen;
  for (int i = 0; i < n.destinations_size(); ++i) {
    const std::string& d = n.destinations(i);
    std::string field = absl::StrCat("destinations[", i, "]");
    const size_t before = c.failures();
    c.Region(field, d, true);
    if (c.failures() != before) continue;
    if (d == rules.self_jurisdiction) c.Fail(field, "must not be the origin itself");
    else if (rules.peers.count(d) == 0) c.FailAs("NOT_A_PEER", field, absl::StrCat(d, " is not a peer of this node"));
    else if (!seen.insert(d).second) c.Fail(field, "duplicate destination");
  }
  if (!n.has_occurred_at()) {
    c.Fail("occurred_at", "required");
  } else if (c.Instant("occurred_at", n.occurred_at())) {
    const auto& ts = n.occurred_at();
    absl::Time t = absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
    if (rules.now != absl::InfinitePast() && t > rules.now + kMaxFutureSkew) {
      c.Fail("occurred_at", "must not be more than 5 minutes in the future");
    }
  }
  c.Enum("priority", n.priority(), v1::Priority_IsValid(n.priority()));
  if (!n.in_reply_to().empty()) c.Key("in_reply_to", n.in_reply_to(), 128);
  if (!n.in_reply_to_origin().empty()) {
    if (n.in_reply_to().empty()) {
      c.Fail("in_reply_to_origin", "requires in_reply_to");
    } else {
      c.Region("in_reply_to_origin", n.in_reply_to_origin(), true);
    }
  }
  c.Range("revision", n.revision(), 0, 1000);
  if (n.revision() > 0 && n.in_reply_to().empty()) {
    c.Fail("in_reply_to", "required when revision > 0 (names the notice corrected)");
  }
  if (n.has_reply_due() && c.Instant("reply_due", n.reply_due()) && n.has_occurred_at() &&
      (n.reply_due().seconds() < n.occurred_at().seconds())) {
    c.Fail("reply_due", "must not be before occurred_at");
  }
  CheckBody(c, n, rules.now);
  if (!c.ok()) return c.status();
  return std::move(c.warnings());
}

absl::Status CheckBatchManifest(const v1::Batch& batch, absl::string_view origin,
                                absl::string_view self, absl::string_view origin_key) {
  if (!batch.has_manifest()) return absl::FailedPreconditionError("batch.manifest: missing");
  if (!VerifySignature(origin_key, kManifestContext, batch.manifest().message(),
                       batch.manifest().signature())
           .ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("batch.manifest.signature: does not verify with the key of ", origin));
  }
  v1::BatchManifest m;
  if (!m.ParseFromString(batch.manifest().message())) {
    return absl::InvalidArgumentError("batch.manifest.message: not a caseway.v1.BatchManifest");
  }
  const uint64_t last = batch.first_seq() + batch.entries_size() - 1;
  if (m.origin() != origin || m.destination() != self || m.first_seq() != batch.first_seq() ||
      m.last_seq() != last || m.digests_size() != batch.entries_size()) {
    return absl::InvalidArgumentError("batch.manifest: does not describe this batch");
  }
  for (int i = 0; i < batch.entries_size(); ++i) {
    if (Sha256(batch.entries(i).notice()) != m.digests(i)) {
      return absl::DataLossError(absl::StrCat("batch.entries[", i, "]: seq ",
                                              batch.entries(i).seq(),
                                              " does not match its digest in the manifest"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NoticeFacts>> CheckReceivedEntries(const v1::Batch& batch,
                                                              absl::string_view origin,
                                                              absl::string_view self) {
  std::vector<NoticeFacts> ids;
  ids.reserve(batch.entries_size());
  for (int i = 0; i < batch.entries_size(); ++i) {
    const v1::Entry& e = batch.entries(i);
    if (e.seq() != batch.first_seq() + i) {
      return absl::FailedPreconditionError(absl::StrCat(
          "batch.entries[", i, "].seq: ", e.seq(), " breaks contiguity (expected ",
          batch.first_seq() + i, ")"));
    }
    v1::Notice n;
    if (!n.ParseFromString(e.notice())) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch.entries[", i, "].notice: not a parsable caseway.v1.Notice"));
    }
    // A peer may deliver only its own notices, addressed to this node.
    if (n.origin() != origin) {
      return absl::PermissionDeniedError(absl::StrCat("batch.entries[", i, "].notice.origin: ",
                                                      Echo(n.origin()), " is not the sending peer ",
                                                      origin));
    }
    if (std::find(n.destinations().begin(), n.destinations().end(), self) ==
        n.destinations().end()) {
      return absl::PermissionDeniedError(
          absl::StrCat("batch.entries[", i, "].notice.destinations: does not include ", self));
    }
    ids.push_back(FactsOf(n));
  }
  return ids;
}

absl::StatusOr<CheckedBatch> CheckedBatch::Check(const v1::Batch& batch, std::string origin,
                                                 absl::string_view self) {
  auto facts = CheckReceivedEntries(batch, origin, self);
  if (!facts.ok()) return facts.status();
  return CheckedBatch(&batch, std::move(origin), std::string(self), std::move(*facts));
}

}  // namespace caseway::common
