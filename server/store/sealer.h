// Sealer: personal data encrypted at rest (AES-256-GCM, OpenSSL), with keys from a key file.
//
// What is sealed: the bodies the store keeps of notices (published and received) and of the query
// answers it received, the only places that hold names, identity numbers, addresses or pregnancy
// status; and the access log's key (meta 'access_key'). Digests, the exchange log, manifests, receipts and signatures are not personal data and
// stay as they are, so `caseway audit` verifies a database without the key.
//
// A sealed value is
//   0xCF | 0x01 | key id (4 bytes, big-endian) | nonce (12 bytes) | ciphertext | tag (16 bytes)
// authenticated with additional data = the first 6 bytes || the row's context (its table and
// key), so a value moved to another row does not open. The first byte has wire type 7, which no
// serialized protobuf message starts with: a stored value is told sealed or plain by looking at
// it, and a database written before encryption was turned on stays readable until resealed.
//
// Key file: text, one key per line, "<id> <64 hexadecimal digits>" (id 1..4294967295), '#' starts
// a comment. Every listed key opens; the last one seals. Rotation: append a key (`caseway-node
// add-key`), restart, reseal what older keys sealed (`caseway-node reseal`), then remove them.
// The file must belong to the node's user and be readable by nobody else (mode 0600 or 0400).
//
// Nonces are random: a key must seal fewer than 2^32 values (NIST SP 800-38D, 8.3). At ten million
// notices a day that is more than a year; rotate well before (docs/operator.md, "Encryption at
// rest").
#ifndef CASEWAY_SERVER_STORE_SEALER_H_
#define CASEWAY_SERVER_STORE_SEALER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace caseway::server {

class Sealer {
 public:
  // Load reads a key file: FAILED_PRECONDITION naming the file (and line) when it is missing,
  // unsafe (another owner, readable or writable by group or others) or malformed.
  static absl::StatusOr<std::unique_ptr<Sealer>> Load(const std::string& key_file);
  // AddKey appends a new random key to `key_file` (created, mode 0600, when it does not exist) and
  // returns its id: one more than the highest listed. The file is synced before it returns.
  static absl::StatusOr<uint32_t> AddKey(const std::string& key_file);

  // Seal encrypts `plain` for the row named by `context` under the current key. An empty value
  // stays empty (retention's mark of a removed body). Thread-safe.
  std::string Seal(absl::string_view plain, absl::string_view context) const;
  // Open returns the plain value of `stored`: a sealed value is decrypted and authenticated, any
  // other value is returned as it is (written before encryption was on). DATA_LOSS when the
  // value does not open (tampered, or moved from another row); FAILED_PRECONDITION when the key
  // that sealed it is not in the key file. Thread-safe.
  absl::StatusOr<std::string> Open(absl::string_view stored, absl::string_view context) const;

  // KeyOf returns the id of the key that sealed `stored`, 0 for a plain value.
  static uint32_t KeyOf(absl::string_view stored);
  uint32_t current_key() const { return current_; }
  bool Has(uint32_t key) const { return keys_.count(key) > 0; }
  const std::string& file() const { return file_; }

 private:
  Sealer() = default;
  std::string file_;
  std::map<uint32_t, std::string> keys_;  // id -> 32 key bytes
  uint32_t current_ = 0;
};

// OpenBody returns the plain value of a stored body: through `sealer` when there is one, else
// the value itself, or FAILED_PRECONDITION when it is sealed and no key file is configured. An
// error names the row ("stored body of inbox 440305 17: ...").
absl::StatusOr<std::string> OpenBody(const Sealer* sealer, absl::string_view stored,
                                     absl::string_view context);

// Contexts name the row a sealed value belongs to (its additional authenticated data).
std::string NoticeContext(absl::string_view notice_id);
std::string InboxContext(absl::string_view origin, uint64_t channel_seq);
std::string AnswerContext(absl::string_view peer, absl::string_view digest);
// A destination's copy (shared_copy) is named by its destination and notice id: known before the
// writer assigns the sequence, so it is sealed on the publishing thread. Copies stored by
// Caseway before this were named by (destination, seq): LegacyCopyContext; OpenCopy opens both,
// and `caseway-node reseal` moves them to the current name.
std::string CopyContext(absl::string_view destination, absl::string_view notice_id);
std::string LegacyCopyContext(absl::string_view destination, uint64_t seq);
absl::StatusOr<std::string> OpenCopy(const Sealer* sealer, absl::string_view stored,
                                     absl::string_view destination, absl::string_view notice_id,
                                     uint64_t seq);
std::string MetaContext(absl::string_view key);

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_SEALER_H_
