#include "common/signing.h"

#include <map>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

}  // namespace

SigningKey::SigningKey(void* pkey) : pkey_(pkey) {
  unsigned char raw[32];
  size_t len = sizeof raw;
  EVP_PKEY_get_raw_public_key(static_cast<EVP_PKEY*>(pkey_), raw, &len);
  public_key_.assign(reinterpret_cast<char*>(raw), len);
}

SigningKey::~SigningKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

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
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[64];
  size_t len = sizeof sig;
  if (EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, static_cast<EVP_PKEY*>(pkey_)) != 1 ||
      EVP_DigestSign(ctx, sig, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1) {
    std::abort();  // a valid Ed25519 key always signs
  }
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<char*>(sig), len);
}

std::string SigningKey::Sign(absl::string_view context, absl::string_view message) const {
  return SignRaw(Contextual(context, message));
}

namespace {

// VerifierKey returns the Ed25519 EVP_PKEY of a raw public key, from a per-thread cache: importing
// a raw key through OpenSSL 3's providers costs more than the verification itself, and a node
// verifies the same few peers' keys over and over (a hub: a few thousand).
EVP_PKEY* VerifierKey(absl::string_view public_key) {
  struct Cache {
    std::map<std::string, EVP_PKEY*, std::less<>> keys;
    ~Cache() {
      for (auto& [k, pkey] : keys) EVP_PKEY_free(pkey);
    }
  };
  thread_local Cache cache;
  auto it = cache.keys.find(public_key);
  if (it != cache.keys.end()) return it->second;
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(public_key.data()), 32);
  if (pkey == nullptr) return nullptr;
  if (cache.keys.size() >= 16384) {  // bounded: a directory is a few thousand nodes
    for (auto& [k, old] : cache.keys) EVP_PKEY_free(old);
    cache.keys.clear();
  }
  cache.keys.emplace(std::string(public_key), pkey);
  return pkey;
}

}  // namespace

absl::Status VerifyRawSignature(absl::string_view public_key, absl::string_view message,
                                absl::string_view signature) {
  if (public_key.size() != 32) return absl::InvalidArgumentError("public key: 32 bytes expected");
  if (signature.size() != 64) return absl::InvalidArgumentError("signature: 64 bytes expected");
  EVP_PKEY* pkey = VerifierKey(public_key);
  if (pkey == nullptr) return absl::InvalidArgumentError("public key: not an Ed25519 key");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  int ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey) == 1 &&
           EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()),
                            message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return absl::PermissionDeniedError("signature does not verify");
  return absl::OkStatus();
}

absl::Status VerifySignature(absl::string_view public_key, absl::string_view context,
                             absl::string_view message, absl::string_view signature) {
  return VerifyRawSignature(public_key, Contextual(context, message), signature);
}

std::string CheckpointBody(const Checkpoint& c) {
  return absl::StrCat(c.origin, "\n", c.size, "\n", absl::Base64Escape(c.root), "\n");
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

}  // namespace caseway::common
