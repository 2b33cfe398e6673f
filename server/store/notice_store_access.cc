// NoticeStore: the access log (docs/privacy.md): who read whose personal data, when and why.
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/clock.h"
#include "common/status_macros.h"
#include "server/store/notice_store.h"
#include "server/store/statements.h"

namespace caseway::server {

namespace v1 = caseway::v1;

namespace {

constexpr size_t kSubjectKeyBytes = 16;
constexpr char kPlaceholderId[] = "000000000000000000";  // names no one

}  // namespace

void AccessEntry::Add(const v1::Notice& notice) {
  ++notices;
  // Every identity number a notice holds: its subject's, and a birth registration's spouse's.
  for (const std::string* id : {&notice.subject().id_number(),
                                &notice.birth_service_registration().spouse_id_number()}) {
    if (!id->empty() && *id != kPlaceholderId) id_numbers.insert(*id);
  }
}

void AccessEntry::AddBytes(absl::string_view bytes) {
  if (bytes.empty()) return;
  v1::Notice n;
  if (n.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    Add(n);
  } else {
    ++notices;
  }
}

absl::StatusOr<std::string> NoticeStore::LoadAccessKey(Db& db, const Sealer* sealer) {
  std::string stored;
  {
    Stmt s(&db, "SELECT value FROM meta WHERE key = 'access_key'");
    if (s.Step()) stored = std::string(s.Blob(0));
    RETURN_IF_ERROR(s.status("read meta.access_key"));
  }
  // Stored as 64 hexadecimal digits, sealed when a key file is set: text in the clear never
  // starts with the sealed values' first byte, where 32 random bytes would one time in 256.
  std::string hex;
  if (stored.empty()) {
    std::string key(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), 32) != 1) {
      return absl::InternalError("no random bytes for the access log's key");
    }
    hex = common::ToHex(key);
  } else {
    ASSIGN_OR_RETURN(hex, OpenBody(sealer, stored, MetaContext("access_key")));
    if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) {
          return absl::ascii_isxdigit(static_cast<unsigned char>(c));
        })) {
      return absl::DataLossError("meta.access_key: 64 hexadecimal digits expected");
    }
    // Written in the clear before encryption was on: sealed now (reseal rebuilds the file).
    if (sealer == nullptr || Sealer::KeyOf(stored) != 0) return absl::HexStringToBytes(hex);
  }
  Stmt w(&db, "INSERT INTO meta(key, value) VALUES('access_key', ?)"
              " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  w.BindBlob(1, sealer != nullptr ? sealer->Seal(hex, MetaContext("access_key")) : hex);
  w.Step();
  RETURN_IF_ERROR(w.status("write meta.access_key"));
  return absl::HexStringToBytes(hex);
}

std::string NoticeStore::SubjectKey(absl::string_view id_number) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), access_key_.data(), static_cast<int>(access_key_.size()),
       reinterpret_cast<const unsigned char*>(id_number.data()), id_number.size(), mac, &len);
  return std::string(reinterpret_cast<const char*>(mac), kSubjectKeyBytes);
}

absl::Status NoticeStore::InsertAccess(Db* db, const AccessEntry& entry) {
  Stmt& a = stmts_->insert_access;
  a.Bind(1, absl::ToUnixMicros(common::Now()))
      .Bind(2, entry.who)
      .Bind(3, entry.what)
      .Bind(4, entry.purpose)
      .Bind(5, entry.peer)
      .Bind(6, int64_t{entry.notices});
  ASSIGN_OR_RETURN(const int64_t id, Returned(a, "insert access"));
  Stmt& s = stmts_->insert_access_subject;
  for (const std::string& number : entry.id_numbers) {
    s.BindBlob(1, SubjectKey(number)).Bind(2, id);
    RETURN_IF_ERROR(Done(s, "insert access subject"));
  }
  return absl::OkStatus();
}

absl::Status NoticeStore::RecordAccess(const AccessEntry& entry) {
  return AwaitWrite([&](WriteDone done) { RecordAccessAsync(entry, std::move(done)); });
}

void NoticeStore::RecordAccessAsync(AccessEntry entry, WriteDone done) {
  auto shared = std::make_shared<AccessEntry>(std::move(entry));
  queue_->Submit([this, shared](Db* db) { return InsertAccess(db, *shared); }, std::move(done),
                 CommitQueue::Rerun::kSafe);
}

absl::StatusOr<std::vector<v1::AccessRecord>> NoticeStore::ReadAccess(const std::string& id_number,
                                                                      uint64_t after,
                                                                      uint32_t limit) {
  const std::string subject = SubjectKey(id_number);
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<v1::AccessRecord>> {
    std::vector<v1::AccessRecord> out;
    Stmt s(db, "SELECT a.id, a.at, a.who, a.what, a.purpose, a.peer, a.notices FROM access_subject "
               "x JOIN access a ON a.id = x.access WHERE x.subject = ? AND x.access > ? "
               "ORDER BY x.access LIMIT ?");
    s.BindBlob(1, subject).Bind(2, static_cast<int64_t>(after)).Bind(3, int64_t{limit});
    while (s.Step()) {
      v1::AccessRecord& r = out.emplace_back();
      r.set_id(s.Int(0));
      *r.mutable_at() = google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(s.Int(1));
      r.set_who(s.Text(2));
      r.set_what(s.Text(3));
      r.set_purpose(s.Text(4));
      r.set_peer(s.Text(5));
      r.set_notices(static_cast<uint32_t>(s.Int(6)));
    }
    RETURN_IF_ERROR(s.status("read access log"));
    return out;
  });
}

}  // namespace caseway::server
