#include "common/signing.h"

#include <cstdint>
#include <cstdlib>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/digest.h"

namespace caseway::common {
namespace {

constexpr absl::string_view kDash = "\xE2\x80\x94 ";  // "— " (U+2014, space)

std::string Contextual(absl::string_view context, absl::string_view message) {
  std::string out;
  out.reserve(context.size() + 1 + message.size());
  out.append(context.data(), context.size());
  out.push_back('\0');
  out.append(message.data(), message.size());
  return out;
}

// Signatures are made and checked with libsodium: the same Ed25519 (RFC 8032, deterministic:
// the same key and message give the same signature as OpenSSL's), measured on these machines at
// 27 us a signature and 72 us a verification where OpenSSL 3.0 took 53 and 154 in the same hour
// (caseway-bench-units; bench/results/PROFILE.md, "Signatures, unit costs, and two dead ends").
// A hub verifies one receipt per batch it sends, and a live fan-out sends batches of one notice.
// OpenSSL still reads the PEM keys.
void SodiumInit() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) std::abort();  // libsodium without a random source is a broken installation
}

}  // namespace

SigningKey::SigningKey(void* pkey) {
  SodiumInit();
  unsigned char seed[32];
  size_t seed_len = sizeof seed;
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  secret_.resize(crypto_sign_SECRETKEYBYTES);
  const bool read = EVP_PKEY_get_raw_private_key(static_cast<EVP_PKEY*>(pkey), seed, &seed_len) == 1;
  EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey));
  if (!read ||
      seed_len != sizeof seed ||
      crypto_sign_seed_keypair(pk, reinterpret_cast<unsigned char*>(secret_.data()), seed) != 0) {
    std::abort();  // an Ed25519 key read by OpenSSL always has its 32-byte seed
  }
  sodium_memzero(seed, sizeof seed);
  public_key_.assign(reinterpret_cast<char*>(pk), sizeof pk);
}

SigningKey::~SigningKey() {
  sodium_memzero(secret_.data(), secret_.size());
}

absl::StatusOr<std::shared_ptr<const SigningKey>> SigningKey::LoadPem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (pkey == nullptr) return absl::InvalidArgumentError("signing key: not a PEM private key");
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(pkey);
    return absl::InvalidArgumentError("signing key: Ed25519 expected");
  }
  return std::shared_ptr<const SigningKey>(new SigningKey(pkey));
}

std::shared_ptr<const SigningKey> SigningKey::Generate() {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  return std::shared_ptr<const SigningKey>(new SigningKey(pkey));
}

std::string SigningKey::SignRaw(absl::string_view message) const {
  unsigned char sig[crypto_sign_BYTES];
  if (crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                           message.size(),
                           reinterpret_cast<const unsigned char*>(secret_.data())) != 0) {
    std::abort();  // a valid Ed25519 key always signs
  }
  return std::string(reinterpret_cast<char*>(sig), sizeof sig);
}

std::string SigningKey::Sign(absl::string_view context, absl::string_view message) const {
  return SignRaw(Contextual(context, message));
}

absl::Status VerifyRawSignature(absl::string_view public_key, absl::string_view message,
                                absl::string_view signature) {
  if (public_key.size() != 32) return absl::InvalidArgumentError("public key: 32 bytes expected");
  if (signature.size() != 64) return absl::InvalidArgumentError("signature: 64 bytes expected");
  SodiumInit();
  // Beyond what OpenSSL refused (an S that is not reduced, among others), libsodium refuses a
  // public key or an R of small order, which no honest signer produces.
  if (crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                  reinterpret_cast<const unsigned char*>(message.data()),
                                  message.size(),
                                  reinterpret_cast<const unsigned char*>(public_key.data())) != 0) {
    return absl::PermissionDeniedError("signature does not verify");
  }
  return absl::OkStatus();
}

absl::Status VerifySignature(absl::string_view public_key, absl::string_view context,
                             absl::string_view message, absl::string_view signature) {
  return VerifyRawSignature(public_key, Contextual(context, message), signature);
}

std::string CheckpointBody(const Checkpoint& c) {
  std::string body = absl::StrCat(c.origin, "\n", c.size, "\n", absl::Base64Escape(c.root), "\n");
  if (c.time > 0) absl::StrAppend(&body, "time ", c.time, "\n");
  return body;
}

absl::StatusOr<Checkpoint> ParseCheckpointBody(absl::string_view body) {
  std::vector<absl::string_view> lines = absl::StrSplit(body, '\n');
  if (lines.size() < 4 || !lines.back().empty()) {
    return absl::InvalidArgumentError("checkpoint: origin, size and root lines expected");
  }
  Checkpoint c;
  c.origin = std::string(lines[0]);
  if (c.origin.empty()) return absl::InvalidArgumentError("checkpoint line 1: empty origin");
  if (!absl::SimpleAtoi(lines[1], &c.size) || lines[1].empty() ||
      (lines[1].size() > 1 && lines[1][0] == '0')) {
    return absl::InvalidArgumentError("checkpoint line 2: a decimal tree size expected");
  }
  if (!absl::Base64Unescape(lines[2], &c.root) || c.root.size() != 32) {
    return absl::InvalidArgumentError("checkpoint line 3: a base64 32-byte root expected");
  }
  for (size_t i = 3; i + 1 < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (line.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint line ", i + 1, ": empty"));
    }
    if (!absl::ConsumePrefix(&line, "time ")) continue;  // another extension: not ours to read
    if (c.time != 0 || !absl::SimpleAtoi(line, &c.time) || c.time <= 0 ||
        (line.size() > 1 && line[0] == '0')) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint line ", i + 1, ": \"time <POSIX seconds>\" expected once"));
    }
  }
  return c;
}

std::string NoteKeyHash(absl::string_view name, absl::string_view public_key) {
  std::string input = absl::StrCat(name, "\n");
  input.push_back('\x01');
  input.append(public_key.data(), public_key.size());
  return Sha256(input).substr(0, 4);
}

std::string SignNoteLine(absl::string_view body, absl::string_view name, const SigningKey& key) {
  std::string blob = NoteKeyHash(name, key.PublicKey()) + key.SignRaw(body);
  return absl::StrCat(kDash, name, " ", absl::Base64Escape(blob), "\n");
}

std::string FormatNote(const Note& note) {
  std::string out = note.body + "\n";
  for (const auto& s : note.signatures) {
    absl::StrAppend(&out, kDash, s.name, " ", absl::Base64Escape(s.key_hash + s.signature), "\n");
  }
  return out;
}

absl::StatusOr<Note> ParseNote(absl::string_view text) {
  size_t split = text.find("\n\n");
  if (split == absl::string_view::npos) {
    return absl::InvalidArgumentError("note: no blank line before the signatures");
  }
  Note note;
  note.body = std::string(text.substr(0, split + 1));
  absl::string_view rest = text.substr(split + 2);
  if (rest.empty() || rest.back() != '\n') {
    return absl::InvalidArgumentError("note: signature lines must end with a newline");
  }
  rest.remove_suffix(1);
  for (absl::string_view line : absl::StrSplit(rest, '\n')) {
    if (!absl::ConsumePrefix(&line, kDash)) {
      return absl::InvalidArgumentError("note: a signature line must start with an em dash");
    }
    size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) {
      return absl::InvalidArgumentError("note: signature line without a signature");
    }
    std::string blob;
    if (!absl::Base64Unescape(line.substr(space + 1), &blob) || blob.size() < 5) {
      return absl::InvalidArgumentError("note: signature is not base64 of key hash and signature");
    }
    note.signatures.push_back(
        NoteSignature{std::string(line.substr(0, space)), blob.substr(0, 4), blob.substr(4)});
  }
  if (note.signatures.empty()) return absl::InvalidArgumentError("note: no signature");
  return note;
}

absl::Status VerifyNote(const Note& note, absl::string_view name, absl::string_view public_key) {
  const std::string hash = NoteKeyHash(name, public_key);
  for (const auto& s : note.signatures) {
    if (s.name == name && s.key_hash == hash) {
      return VerifyRawSignature(public_key, note.body, s.signature);
    }
  }
  return absl::NotFoundError(absl::StrCat("note: no signature by ", name));
}

namespace {

std::string CosignedMessage(absl::string_view body, int64_t time) {
  return absl::StrCat("cosignature/v1\ntime ", time, "\n", body);
}

}  // namespace

std::string CosignatureKeyId(absl::string_view name, absl::string_view public_key) {
  std::string input = absl::StrCat(name, "\n");
  input.push_back('\x04');
  input.append(public_key.data(), public_key.size());
  return Sha256(input).substr(0, 4);
}

std::string SignCosignatureLine(absl::string_view body, absl::string_view name,
                                const SigningKey& key, int64_t time) {
  std::string blob = CosignatureKeyId(name, key.PublicKey());
  for (int shift = 56; shift >= 0; shift -= 8) {
    blob.push_back(static_cast<char>((static_cast<uint64_t>(time) >> shift) & 0xff));
  }
  blob += key.SignRaw(CosignedMessage(body, time));
  return absl::StrCat(kDash, name, " ", absl::Base64Escape(blob), "\n");
}

absl::StatusOr<int64_t> VerifyCosignature(const Note& note, absl::string_view name,
                                          absl::string_view public_key) {
  const std::string id = CosignatureKeyId(name, public_key);
  for (const auto& s : note.signatures) {
    if (s.name != name || s.key_hash != id) continue;
    if (s.signature.size() != 8 + 64) {
      return absl::PermissionDeniedError("cosignature: timestamp and 64-byte signature expected");
    }
    uint64_t time = 0;
    for (int i = 0; i < 8; ++i) time = (time << 8) | static_cast<unsigned char>(s.signature[i]);
    if (time > static_cast<uint64_t>(INT64_MAX)) {
      return absl::PermissionDeniedError("cosignature: timestamp above 2^63 - 1");
    }
    const int64_t t = static_cast<int64_t>(time);
    absl::Status ok = VerifyRawSignature(public_key, CosignedMessage(note.body, t),
                                         absl::string_view(s.signature).substr(8));
    if (!ok.ok()) return absl::PermissionDeniedError("cosignature does not verify");
    return t;
  }
  return absl::NotFoundError(absl::StrCat("note: no cosignature by ", name));
}

}  // namespace caseway::common
