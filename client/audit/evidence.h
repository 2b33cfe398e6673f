// The auditor's rules for signed evidence: when a manifest or a receipt counts for a channel.
// One definition, used by reconcile, verify-bundle and `caseway audit evidence`.
#ifndef CASEWAY_CLIENT_AUDIT_EVIDENCE_H_
#define CASEWAY_CLIENT_AUDIT_EVIDENCE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "caseway/v1/exchange_log.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "common/directory.h"

namespace caseway::client::audit {

// A batch covers at most this many sequences: wider ranges from a log or a manifest are not
// trusted (a node under audit must not make the auditor loop or allocate without bound).
inline constexpr uint64_t kMaxRange = 100000;

inline bool SaneRange(uint64_t first, uint64_t last) {
  return first >= 1 && last >= first && last - first < kMaxRange;
}

// OpenManifest returns the BatchManifest in `s` when it is for the channel origin -> destination,
// signed with the origin's directory key in the manifest context, with a sane range and one
// digest per sequence; nullopt otherwise.
std::optional<caseway::v1::BatchManifest> OpenManifest(const caseway::v1::Signed& s,
                                                       const common::Directory& directory,
                                                       const std::string& origin,
                                                       const std::string& destination);

// OpenReceipt returns the Receipt in `s` when it is signed by `destination` (its directory key,
// receipt context) for a batch from `origin`, with a sane range; nullopt otherwise.
std::optional<caseway::v1::Receipt> OpenReceipt(const caseway::v1::Signed& s,
                                                const common::Directory& directory,
                                                const std::string& origin,
                                                const std::string& destination);

// OpenAnswer returns the QueryAnswer in `s` when it is signed by `answerer` (its directory key,
// context "caseway/v1 query answer") and answers `asker`; nullopt otherwise.
std::optional<caseway::v1::QueryAnswer> OpenAnswer(const caseway::v1::Signed& s,
                                                   const common::Directory& dir,
                                                   const std::string& asker,
                                                   const std::string& answerer);

// Covers reports whether a manifest opened by OpenManifest holds `seq`.
inline bool Covers(const caseway::v1::BatchManifest& m, uint64_t seq) {
  return seq >= m.first_seq() && seq <= m.last_seq();
}

// SeqDigest is the notice digest a manifest gives `seq`. REQUIRES: Covers(m, seq).
inline const std::string& SeqDigest(const caseway::v1::BatchManifest& m, uint64_t seq) {
  return m.digests(static_cast<int>(seq - m.first_seq()));
}

}  // namespace caseway::client::audit

#endif  // CASEWAY_CLIENT_AUDIT_EVIDENCE_H_
