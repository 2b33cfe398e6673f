// Ed25519 signatures: node signing keys, domain-separated message signatures, and checkpoints in
// the C2SP signed-note format.
#ifndef CASEWAY_COMMON_SIGNING_H_
#define CASEWAY_COMMON_SIGNING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace caseway::common {

// Signature contexts: a signature made for one can never verify for another.
inline constexpr absl::string_view kManifestContext = "caseway/v1 batch manifest";
inline constexpr absl::string_view kReceiptContext = "caseway/v1 receipt";
inline constexpr absl::string_view kQueryAnswerContext = "caseway/v1 query answer";

// SigningKey is a node's long-lived Ed25519 key (not its TLS key). Thread-safe (immutable).
class SigningKey {
 public:
  // LoadPem reads a PKCS#8 PEM Ed25519 private key. INVALID_ARGUMENT otherwise.
  static absl::StatusOr<std::shared_ptr<const SigningKey>> LoadPem(const std::string& pem);
  // Generate makes a fresh key (tests).
  static std::shared_ptr<const SigningKey> Generate();
  ~SigningKey();
  SigningKey(const SigningKey&) = delete;  // one copy of the secret, wiped with it
  SigningKey& operator=(const SigningKey&) = delete;

  // PublicKey is the raw 32-byte public key.
  const std::string& PublicKey() const { return public_key_; }
  // Sign signs `context` || 0x00 || `message` (64-byte signature).
  std::string Sign(absl::string_view context, absl::string_view message) const;
  // SignRaw signs `message` as is (signed notes).
  std::string SignRaw(absl::string_view message) const;

 private:
  // Takes the EVP_PKEY* OpenSSL read or made, keeps its key in libsodium's form, and frees it.
  explicit SigningKey(void* pkey);
  std::string public_key_;
  std::string secret_;  // libsodium's 64-byte secret key (seed || public key), wiped on destruction
};

// VerifySignature checks a signature made by SigningKey::Sign with the same context.
// INVALID_ARGUMENT for a malformed key or signature, PERMISSION_DENIED when it does not verify.
absl::Status VerifySignature(absl::string_view public_key, absl::string_view context,
                             absl::string_view message, absl::string_view signature);
absl::Status VerifyRawSignature(absl::string_view public_key, absl::string_view message,
                                absl::string_view signature);

// Checkpoint is the body of a signed checkpoint note: origin, tree size, root hash and, from
// Caseway 0.2 on, the signer's time as an extension line.
struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  std::string root;  // 32 bytes
  // POSIX seconds at signing (extension line "time <seconds>"); 0 when the note has none.
  int64_t time = 0;
};

// CheckpointBody formats "<origin>\n<size>\n<base64 root>\n" (C2SP tlog-checkpoint), followed by
// the extension line "time <seconds>\n" when checkpoint.time > 0.
std::string CheckpointBody(const Checkpoint& checkpoint);
// ParseCheckpointBody parses a note body: origin, size, root, then extension lines, of which it
// reads "time <seconds>" and ignores others. INVALID_ARGUMENT naming the line.
absl::StatusOr<Checkpoint> ParseCheckpointBody(absl::string_view body);

// NoteSignature is one signature line of a signed note.
struct NoteSignature {
  std::string name;
  std::string key_hash;   // 4 bytes
  std::string signature;  // 64 bytes for Ed25519
};

// Note is a parsed signed note: the signed text and its signature lines.
struct Note {
  std::string body;  // ends with "\n"
  std::vector<NoteSignature> signatures;
};

// NoteKeyHash = SHA-256(name || "\n" || 0x01 || public key)[:4] (Ed25519 key id of signed-note).
std::string NoteKeyHash(absl::string_view name, absl::string_view public_key);
// SignNoteLine signs `body` and returns the line "— <name> <base64(key hash || signature)>\n".
std::string SignNoteLine(absl::string_view body, absl::string_view name, const SigningKey& key);
// FormatNote renders body, blank line and signature lines.
std::string FormatNote(const Note& note);
// ParseNote splits a signed note. INVALID_ARGUMENT when malformed.
absl::StatusOr<Note> ParseNote(absl::string_view text);
// VerifyNote checks that `note` carries a valid signature by `name` with `public_key`.
// NOT_FOUND when there is no signature line of that key; PERMISSION_DENIED when it fails.
absl::Status VerifyNote(const Note& note, absl::string_view name, absl::string_view public_key);

// Cosignatures in the C2SP tlog-cosignature format (cosignature/v1, Ed25519): the key ID is
// SHA-256(name || "\n" || 0x04 || public key)[:4], and the signature is an 8-byte big-endian
// POSIX timestamp followed by an Ed25519 signature over
// "cosignature/v1\ntime <timestamp>\n" || note body.
std::string CosignatureKeyId(absl::string_view name, absl::string_view public_key);
// SignCosignatureLine cosigns `body` at `time` (POSIX seconds) and returns the signature line.
std::string SignCosignatureLine(absl::string_view body, absl::string_view name,
                                const SigningKey& key, int64_t time);
// VerifyCosignature checks that `note` carries a valid cosignature/v1 by `name` with
// `public_key` and returns its timestamp. NOT_FOUND when there is no line with that name and key
// ID; PERMISSION_DENIED when it does not verify.
absl::StatusOr<int64_t> VerifyCosignature(const Note& note, absl::string_view name,
                                          absl::string_view public_key);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_SIGNING_H_
