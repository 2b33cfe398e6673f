// Directory: the federation directory of node signing keys, loaded by nodes and auditors.
#ifndef CASEWAY_COMMON_DIRECTORY_H_
#define CASEWAY_COMMON_DIRECTORY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caseway/v1/exchange_log.pb.h"
#include "common/signing.h"

namespace caseway::common {

// Directory maps jurisdictions to their Ed25519 signing keys over time. Thread-safe (immutable).
//
// A node has one key for ever (`signing_key`) or, once it rotated, several with validity periods
// (`keys`). A signature verifies only with a key valid at the time the signed object states:
// a manifest's created_at, a receipt's received_at, a query answer's answered_at, a checkpoint's
// time line, a cosignature's timestamp. That time is the signer's word: a stolen key can still
// sign objects dated inside its period, which the exchange log and the peers' cosignatures of it
// expose (docs/operator.md, "A compromised key").
class Directory {
 public:
  // One key and its period [from, until).
  struct ListedKey {
    std::string public_key;  // 32 bytes
    absl::Time from = absl::InfinitePast();
    absl::Time until = absl::InfiniteFuture();
    bool ValidAt(absl::Time t) const { return from <= t && t < until; }
  };

  // Load reads a YAML or JSON caseway.v1.FederationDirectory. Errors name the file, the field and
  // the rule (INVALID_ARGUMENT) or the unreadable path (NOT_FOUND).
  static absl::StatusOr<Directory> Load(const std::string& path);
  static absl::StatusOr<Directory> FromProto(const caseway::v1::FederationDirectory& proto,
                                             const std::string& source);

  const std::string& federation() const { return federation_; }
  // Keys returns every key of `jurisdiction`, oldest first; NOT_FOUND when it is not listed.
  absl::StatusOr<std::vector<ListedKey>> Keys(const std::string& jurisdiction) const;
  // Key returns the key of `jurisdiction` valid now (common::Now; the newest when periods
  // overlap). NOT_FOUND when it is not listed, or has no key valid now.
  absl::StatusOr<std::string> Key(const std::string& jurisdiction) const;
  // Listed says whether `jurisdiction` is a node of the directory. NOT_FOUND otherwise.
  absl::Status Listed(const std::string& jurisdiction) const;

  // Verify checks a context signature (SigningKey::Sign) made by `signer` on an object stating
  // the time `at`. NOT_FOUND when the signer is not listed; PERMISSION_DENIED naming the time
  // when no key valid then verifies it.
  absl::Status Verify(const std::string& signer, absl::Time at, absl::string_view context,
                      absl::string_view message, absl::string_view signature) const;
  // VerifyCheckpoint checks that `note` carries a signature of `jurisdiction`'s by a key valid
  // at the checkpoint's time line. A note without one (written before Caseway 0.2, before any
  // rotation) verifies only with a key valid from the beginning.
  absl::Status VerifyCheckpoint(const Note& note, const std::string& jurisdiction) const;
  // VerifyCosignatureOf checks that `note` carries a cosignature of `jurisdiction`'s by a key valid
  // at the cosignature's timestamp, and returns that timestamp and key. NOT_FOUND when there is
  // none; PERMISSION_DENIED when one is dated outside its key's period or does not verify.
  struct Cosigned {
    int64_t time = 0;
    std::string public_key;
  };
  absl::StatusOr<Cosigned> VerifyCosignatureOf(const Note& note,
                                               const std::string& jurisdiction) const;

  // NoteName is the signed-note name and checkpoint origin of a node: "<federation>/node/<j>".
  std::string NoteName(const std::string& jurisdiction) const;
  // JurisdictionOf is NoteName's inverse: the jurisdiction of "<federation>/node/<j>".
  // PERMISSION_DENIED when `note_name` is not a node of this federation.
  absl::StatusOr<std::string> JurisdictionOf(absl::string_view note_name) const;
  const std::map<std::string, std::vector<ListedKey>>& keys() const { return keys_; }

 private:
  std::string federation_;
  std::map<std::string, std::vector<ListedKey>> keys_;  // each sorted by `from`
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_DIRECTORY_H_
