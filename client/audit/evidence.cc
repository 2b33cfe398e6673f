#include "client/audit/evidence.h"

#include "common/signing.h"

namespace caseway::client::audit {

std::optional<v1::BatchManifest> OpenManifest(const v1::Signed& s, const common::Directory& dir,
                                              const std::string& origin,
                                              const std::string& destination) {
  auto key = dir.Key(origin);
  v1::BatchManifest m;
  if (!key.ok() || !m.ParseFromString(s.message()) || m.origin() != origin ||
      m.destination() != destination || !SaneRange(m.first_seq(), m.last_seq()) ||
      m.digests_size() != static_cast<int>(m.last_seq() - m.first_seq() + 1) ||
      !common::VerifySignature(*key, common::kManifestContext, s.message(), s.signature()).ok()) {
    return std::nullopt;
  }
  return m;
}

std::optional<v1::Receipt> OpenReceipt(const v1::Signed& s, const common::Directory& dir,
                                       const std::string& origin, const std::string& destination) {
  auto key = dir.Key(destination);
  v1::Receipt r;
  if (!key.ok() || !r.ParseFromString(s.message()) || r.receiver() != destination ||
      r.origin() != origin || !SaneRange(r.first_seq(), r.last_seq()) ||
      !common::VerifySignature(*key, common::kReceiptContext, s.message(), s.signature()).ok()) {
    return std::nullopt;
  }
  return r;
}

std::optional<v1::QueryAnswer> OpenAnswer(const v1::Signed& s, const common::Directory& dir,
                                          const std::string& asker, const std::string& answerer) {
  auto key = dir.Key(answerer);
  v1::QueryAnswer a;
  if (!key.ok() || !a.ParseFromString(s.message()) || a.answerer() != answerer ||
      a.asker() != asker ||
      !common::VerifySignature(*key, common::kQueryAnswerContext, s.message(), s.signature()).ok()) {
    return std::nullopt;
  }
  return a;
}

}  // namespace caseway::client::audit
