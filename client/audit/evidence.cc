#include "client/audit/evidence.h"

#include "common/log_entry.h"
#include "common/signing.h"

namespace caseway::client::audit {

// Each signature is checked with the signer's keys valid at the time its object states
// (common::TimeOf: saturating, for a hostile value).
using common::TimeOf;

std::optional<v1::BatchManifest> OpenManifest(const v1::Signed& s, const common::Directory& dir,
                                              const std::string& origin,
                                              const std::string& destination) {
  v1::BatchManifest m;
  if (!m.ParseFromString(s.message()) || m.origin() != origin ||
      m.destination() != destination || !SaneRange(m.first_seq(), m.last_seq()) ||
      m.digests_size() != static_cast<int>(m.last_seq() - m.first_seq() + 1) ||
      !dir.Verify(origin, TimeOf(m.created_at()), common::kManifestContext, s.message(),
                  s.signature())
           .ok()) {
    return std::nullopt;
  }
  return m;
}

std::optional<v1::Receipt> OpenReceipt(const v1::Signed& s, const common::Directory& dir,
                                       const std::string& origin, const std::string& destination) {
  v1::Receipt r;
  if (!r.ParseFromString(s.message()) || r.receiver() != destination ||
      r.origin() != origin || !SaneRange(r.first_seq(), r.last_seq()) ||
      !dir.Verify(destination, TimeOf(r.received_at()), common::kReceiptContext, s.message(),
                  s.signature())
           .ok()) {
    return std::nullopt;
  }
  return r;
}

std::optional<v1::QueryAnswer> OpenAnswer(const v1::Signed& s, const common::Directory& dir,
                                          const std::string& asker, const std::string& answerer) {
  v1::QueryAnswer a;
  if (!a.ParseFromString(s.message()) || a.answerer() != answerer || a.asker() != asker ||
      !dir.Verify(answerer, TimeOf(a.answered_at()), common::kQueryAnswerContext, s.message(),
                  s.signature())
           .ok()) {
    return std::nullopt;
  }
  return a;
}

}  // namespace caseway::client::audit
