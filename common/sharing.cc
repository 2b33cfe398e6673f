#include "common/sharing.h"


#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/identity.h"
#include "common/proto_bytes.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace caseway::common {
namespace {

namespace v1 = caseway::v1;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

const google::protobuf::OneofDescriptor* BodyOneof() {
  return v1::Notice::descriptor()->FindOneofByName("body");
}

// BodyField is the body field of kind `kind`, or null when caseway.v1.Notice has no such kind.
const FieldDescriptor* BodyField(absl::string_view kind) {
  const FieldDescriptor* f = v1::Notice::descriptor()->FindFieldByName(std::string(kind));
  return f != nullptr && f->containing_oneof() == BodyOneof() ? f : nullptr;
}

// Keep clears every set field of `m` not in `keep`.
void Keep(Message* m, const std::set<std::string>& keep) {
  std::vector<const FieldDescriptor*> set;
  m->GetReflection()->ListFields(*m, &set);
  for (const FieldDescriptor* f : set) {
    if (keep.count(f->name()) == 0) m->GetReflection()->ClearField(m, f);
  }
}

// Outside appends "<prefix>.<field>" for every set field of `m` not in `granted`.
void Outside(const Message& m, absl::string_view prefix, const std::set<std::string>& granted,
             std::vector<std::string>* out) {
  std::vector<const FieldDescriptor*> set;
  m.GetReflection()->ListFields(m, &set);
  for (const FieldDescriptor* f : set) {
    if (granted.count(f->name()) == 0) out->push_back(absl::StrCat(prefix, ".", f->name()));
  }
}

absl::Status CheckParty(absl::string_view party) {
  if (SharingPolicy::IsDepartment(party)) {
    // department/<region>/<name>, as the certificate spiffe://F/department/<region>/<name> names it.
    auto id = ParseSpiffeId(absl::StrCat("spiffe://f/", party));
    if (!id.ok() || id->role != Role::kDepartment) {
      return absl::InvalidArgumentError("must be department/<region code>/<name>");
    }
    return absl::OkStatus();
  }
  absl::Status region = ValidateRegionCode(party);
  if (!region.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "must be a peer's region code or department/<region code>/<name>: ", region.message()));
  }
  return absl::OkStatus();
}

}  // namespace

bool SharingPolicy::IsDepartment(absl::string_view party) {
  return absl::StartsWith(party, "department/");
}

absl::StatusOr<SharingPolicy> SharingPolicy::Parse(absl::string_view yaml,
                                                   absl::string_view source) {
  v1::SharingPolicy proto;
  RETURN_IF_ERROR(ParseYamlInto(yaml, source, &proto));
  return FromProto(std::move(proto), source);
}

absl::StatusOr<SharingPolicy> SharingPolicy::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return Parse(text, path);
}

absl::StatusOr<SharingPolicy> SharingPolicy::FromBytes(absl::string_view bytes) {
  v1::SharingPolicy proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError("not a caseway.v1.SharingPolicy");
  }
  return FromProto(std::move(proto), "signed sharing policy");
}

absl::StatusOr<SharingPolicy> SharingPolicy::FromProto(v1::SharingPolicy proto,
                                                       absl::string_view source) {
  auto bad = [&](absl::string_view field, absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", rule));
  };
  if (proto.version().empty() || proto.version().size() > 64) {
    return bad("version", "required, 1..64 characters (a changed policy needs a new label)");
  }
  SharingPolicy p;
  for (int g = 0; g < proto.grants_size(); ++g) {
    const v1::SharingPolicy::Grant& grant = proto.grants(g);
    const std::string at = absl::StrCat("grants[", g, "]");
    if (absl::Status s = CheckParty(grant.party()); !s.ok()) {
      return bad(absl::StrCat(at, ".party"), s.message());
    }
    if (p.grants_.count(grant.party()) > 0) {
      return bad(absl::StrCat(at, ".party"), absl::StrCat(grant.party(), " has another grant"));
    }
    Grant& out = p.grants_[grant.party()];
    for (int k = 0; k < grant.kinds_size(); ++k) {
      const auto& kind = grant.kinds(k);
      const std::string kat = absl::StrCat(at, ".kinds[", k, "]");
      const FieldDescriptor* body = BodyField(kind.kind());
      if (body == nullptr) {
        return bad(absl::StrCat(kat, ".kind"),
                   absl::StrCat("'", kind.kind(), "' is not a notice kind (a body field of "
                                                  "caseway.v1.Notice: certificate, birth, ...)"));
      }
      if (out.count(kind.kind()) > 0) {
        return bad(absl::StrCat(kat, ".kind"), absl::StrCat(kind.kind(), " is listed twice"));
      }
      KindGrant& kg = out[kind.kind()];
      for (int f = 0; f < kind.fields_size(); ++f) {
        const std::string& path = kind.fields(f);
        const std::string fat = absl::StrCat(kat, ".fields[", f, "]");
        std::vector<std::string> parts = absl::StrSplit(path, '.');
        const bool subject = parts[0] == "subject";
        if ((!subject && parts[0] != kind.kind()) || parts.size() > 2) {
          return bad(fat, absl::StrCat("'", path, "': must be subject, subject.<field>, ",
                                       kind.kind(), " or ", kind.kind(), ".<field>"));
        }
        const Descriptor* d =
            subject ? v1::Subject::descriptor() : body->message_type();
        if (parts.size() == 1) {
          (subject ? kg.all_subject : kg.all_body) = true;
        } else if (d->FindFieldByName(parts[1]) == nullptr) {
          return bad(fat, absl::StrCat("'", path, "': ", d->full_name(), " has no field ",
                                       parts[1]));
        } else {
          (subject ? kg.subject : kg.body).insert(parts[1]);
        }
      }
    }
  }
  p.proto_ = std::move(proto);
  p.bytes_ = DeterministicBytes(p.proto_);
  p.digest_ = Sha256(p.bytes_);
  return p;
}

std::set<std::string> SharingPolicy::GrantedKinds(absl::string_view party) const {
  std::set<std::string> out;
  auto it = grants_.find(std::string(party));
  if (it == grants_.end()) return out;
  for (const auto& [kind, g] : it->second) out.insert(kind);
  return out;
}

std::optional<v1::Notice> SharingPolicy::Apply(absl::string_view party,
                                               const v1::Notice& notice) const {
  auto it = grants_.find(std::string(party));
  if (it == grants_.end()) {
    if (IsDepartment(party)) return std::nullopt;
    return notice;
  }
  v1::Notice out = notice;
  const FieldDescriptor* body =
      notice.GetReflection()->GetOneofFieldDescriptor(notice, BodyOneof());
  auto kind = body == nullptr ? it->second.end() : it->second.find(body->name());
  if (kind == it->second.end()) {
    if (IsDepartment(party)) return std::nullopt;
    // A peer receives every notice addressed to it: the envelope and the kind, nothing else.
    out.clear_subject();
    if (body != nullptr) {
      Message* m = out.GetReflection()->MutableMessage(&out, body);
      m->Clear();
    }
    return out;
  }
  const KindGrant& g = kind->second;
  if (!g.all_subject) {
    if (g.subject.empty()) {
      out.clear_subject();
    } else if (out.has_subject()) {
      Keep(out.mutable_subject(), g.subject);
    }
  }
  if (!g.all_body) Keep(out.GetReflection()->MutableMessage(&out, body), g.body);
  return out;
}

std::vector<std::string> SharingPolicy::Beyond(absl::string_view party,
                                               const v1::Notice& notice) const {
  std::vector<std::string> out;
  auto it = grants_.find(std::string(party));
  if (it == grants_.end() && !IsDepartment(party)) return out;
  const FieldDescriptor* body =
      notice.GetReflection()->GetOneofFieldDescriptor(notice, BodyOneof());
  const std::string kind_name = body == nullptr ? "" : body->name();
  const KindGrant* g = nullptr;
  if (it != grants_.end()) {
    auto k = it->second.find(kind_name);
    if (k != it->second.end()) g = &k->second;
  }
  if (g == nullptr && IsDepartment(party)) {
    out.push_back(kind_name.empty() ? "body" : kind_name);  // the notice itself must not go
    return out;
  }
  static const std::set<std::string> kNone;
  if (notice.has_subject() && (g == nullptr || !g->all_subject)) {
    Outside(notice.subject(), "subject", g == nullptr ? kNone : g->subject, &out);
  }
  if (body != nullptr && (g == nullptr || !g->all_body)) {
    Outside(notice.GetReflection()->GetMessage(notice, body), kind_name,
            g == nullptr ? kNone : g->body, &out);
  }
  return out;
}

}  // namespace caseway::common
