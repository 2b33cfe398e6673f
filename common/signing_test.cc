#include "common/signing.h"

#include <gtest/gtest.h>

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
