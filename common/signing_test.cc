#include "common/signing.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "common/digest.h"

namespace caseway::common {
namespace {

TEST(SigningTest, ContextSeparatesReceiptsFromManifests) {
  auto key = SigningKey::Generate();
  std::string msg = "the same bytes";
  std::string receipt_sig = key->Sign(kReceiptContext, msg);
  EXPECT_TRUE(VerifySignature(key->PublicKey(), kReceiptContext, msg, receipt_sig).ok());
  EXPECT_EQ(VerifySignature(key->PublicKey(), kManifestContext, msg, receipt_sig).code(),
            absl::StatusCode::kPermissionDenied)
      << "a receipt signature must never verify as a batch signature";
  EXPECT_FALSE(VerifySignature(key->PublicKey(), kReceiptContext, msg + "x", receipt_sig).ok());
  EXPECT_FALSE(
      VerifySignature(SigningKey::Generate()->PublicKey(), kReceiptContext, msg, receipt_sig).ok());
  EXPECT_EQ(VerifySignature("short", kReceiptContext, msg, receipt_sig).code(),
            absl::StatusCode::kInvalidArgument);
}

// RFC 8032, section 7.1, TEST 2: a key as a node holds it (PKCS#8 PEM), its public key, and the
// signature of a one-byte message. Ed25519 is deterministic, so the signature made here must be
// exactly the RFC's, and OpenSSL (which reads the keys and in which nodes before libsodium signed)
// must accept what is signed here.
TEST(SigningTest, SignaturesAreRfc8032EdDsaThatOpenSslAccepts) {
  const std::string seed =
      absl::HexStringToBytes("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
  const std::string der = absl::HexStringToBytes("302e020100300506032b657004220420") + seed;
  const std::string pem = "-----BEGIN PRIVATE KEY-----\n" + absl::Base64Escape(der) +
                          "\n-----END PRIVATE KEY-----\n";
  auto key = SigningKey::LoadPem(pem);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(absl::BytesToHexString((*key)->PublicKey()),
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
  const std::string message = absl::HexStringToBytes("72");
  const std::string signature = (*key)->SignRaw(message);
  EXPECT_EQ(absl::BytesToHexString(signature),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
  EXPECT_TRUE(VerifyRawSignature((*key)->PublicKey(), message, signature).ok());

  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> pkey(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                  reinterpret_cast<const unsigned char*>((*key)->PublicKey().data()),
                                  32),
      EVP_PKEY_free);
  ASSERT_NE(pkey, nullptr);
  const std::string contextual = std::string(kReceiptContext) + '\0' + "a receipt";
  const std::string made_here = (*key)->Sign(kReceiptContext, "a receipt");
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  ASSERT_EQ(EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()), 1);
  EXPECT_EQ(EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(made_here.data()),
                             made_here.size(),
                             reinterpret_cast<const unsigned char*>(contextual.data()),
                             contextual.size()),
            1)
      << "OpenSSL must accept a signature made by SigningKey::Sign";
}

// The same signature with L (the group order) added to its S half is the same point equation
// but not the canonical encoding: refused, as RFC 8032 (5.1.7) requires.
TEST(SigningTest, SignatureWithUnreducedScalarIsRefused) {
  auto key = SigningKey::Generate();
  std::string signature = key->SignRaw("message");
  const std::string order = absl::HexStringToBytes(  // L, little-endian
      "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
  unsigned carry = 0;
  for (int i = 0; i < 32; ++i) {
    const unsigned sum = static_cast<unsigned char>(signature[32 + i]) +
                         static_cast<unsigned char>(order[i]) + carry;
    signature[32 + i] = static_cast<char>(sum & 0xff);
    carry = sum >> 8;
  }
  ASSERT_EQ(carry, 0u);  // S < L, so S + L < 2^256
  EXPECT_EQ(VerifyRawSignature(key->PublicKey(), "message", signature).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(SigningTest, CheckpointNoteRoundTripsAndCarriesCosignatures) {
  auto node = SigningKey::Generate();
  auto witness = SigningKey::Generate();
  Checkpoint c{"caseway.demo/node/360102", 42, Sha256("root")};
  std::string body = CheckpointBody(c);
  Note note;
  note.body = body;
  std::string text = body + "\n" + SignNoteLine(body, c.origin, *node) +
                     SignNoteLine(body, "caseway.demo/node/440305", *witness);
  auto parsed = ParseNote(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->body, body);
  ASSERT_EQ(parsed->signatures.size(), 2u);
  EXPECT_EQ(FormatNote(*parsed), text);
  EXPECT_TRUE(VerifyNote(*parsed, c.origin, node->PublicKey()).ok());
  EXPECT_TRUE(VerifyNote(*parsed, "caseway.demo/node/440305", witness->PublicKey()).ok());
  EXPECT_EQ(VerifyNote(*parsed, c.origin, witness->PublicKey()).code(), absl::StatusCode::kNotFound);
  auto body_back = ParseCheckpointBody(parsed->body);
  ASSERT_TRUE(body_back.ok());
  EXPECT_EQ(body_back->size, 42u);
  EXPECT_EQ(body_back->root, c.root);

  std::string tampered = text;
  tampered.replace(tampered.find("\n42\n"), 4, "\n43\n");
  auto bad = ParseNote(tampered);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(VerifyNote(*bad, c.origin, node->PublicKey()).code(),
            absl::StatusCode::kPermissionDenied);
}

// The Ed25519 example of C2SP signed-note (golang.org/x/mod/sumdb/note): a published key and
// note verify with our parser and key-hash computation.
TEST(SigningTest, PublishedSignedNoteExampleVerifies) {
  // Verifier key "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".
  std::string vkey;
  ASSERT_TRUE(absl::Base64Unescape("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &vkey));
  ASSERT_EQ(vkey.size(), 33u);
  ASSERT_EQ(vkey[0], 1);
  std::string pub = vkey.substr(1);
  EXPECT_EQ(ToHex(NoteKeyHash("PeterNeumann", pub)), "c74f20a3");
  std::string text =
      "If you think cryptography is the answer to your problem,\n"
      "then you don't know what your problem is.\n"
      "\n"
      "\xE2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
  auto note = ParseNote(text);
  ASSERT_TRUE(note.ok()) << note.status();
  EXPECT_TRUE(VerifyNote(*note, "PeterNeumann", pub).ok());
}

TEST(SigningTest, CosignatureV1CarriesItsTimeAndVerifiesOnlyWithItsKeyAndBody) {
  auto key = SigningKey::Generate();
  auto other = SigningKey::Generate();
  const std::string body = CheckpointBody({"fed/node/360102", 7, std::string(32, 'r'), 1795000000});
  auto parsed = ParseCheckpointBody(body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->time, 1795000000);
  EXPECT_EQ(parsed->size, 7u);
  const std::string line = SignCosignatureLine(body, "fed/node/440305", *key, 1795000123);
  auto note = ParseNote(body + "\n" + line);
  ASSERT_TRUE(note.ok()) << note.status();
  auto t = VerifyCosignature(*note, "fed/node/440305", key->PublicKey());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, 1795000123);
  // Another key, another name, or a note-signature (0x01) line in its place do not count.
  EXPECT_EQ(VerifyCosignature(*note, "fed/node/440305", other->PublicKey()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(VerifyCosignature(*note, "fed/node/999999", key->PublicKey()).ok());
  auto plain = ParseNote(body + "\n" + SignNoteLine(body, "fed/node/440305", *key));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(VerifyCosignature(*plain, "fed/node/440305", key->PublicKey()).ok());
  // A cosignature over another body fails.
  const std::string body2 = CheckpointBody({"fed/node/360102", 8, std::string(32, 'r'), 1795000000});
  auto moved = ParseNote(body2 + "\n" + line);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(VerifyCosignature(*moved, "fed/node/440305", key->PublicKey()).status().code(),
            absl::StatusCode::kPermissionDenied);
  // The time extension line is read once and must be well formed.
  EXPECT_FALSE(ParseCheckpointBody("o\n1\n" + std::string(44, 'A') + "\ntime 01\n").ok());
  EXPECT_FALSE(ParseCheckpointBody(body + "time 5\n").ok());
  EXPECT_TRUE(ParseCheckpointBody(body + "other extension\n").ok());
}

}  // namespace
}  // namespace caseway::common
