// verify-bundle must refuse bundles that do not prove their claim, whoever made them.
#include <gtest/gtest.h>

#include "client/audit/auditor.h"
#include "common/digest.h"
#include "common/merkle.h"
#include "common/signing.h"

namespace caseway::client::audit {
namespace {

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    v1::FederationDirectory d;
    d.set_federation("fed.test");
    for (auto& [j, k] : {std::pair<std::string, const common::SigningKey*>{"360102", x_.get()},
                         {"440305", y_.get()}, {"110101", z_.get()}}) {
      auto* n = d.add_nodes();
      n->set_jurisdiction(j);
      n->set_signing_key(k->PublicKey());
    }
    dir_ = std::make_unique<common::Directory>(*common::Directory::FromProto(d, "test"));
  }

  // Note signs a checkpoint of X over `leaves` leaf-0..leaf-(n-1) with `prefix` in the names.
  std::string Note(const std::string& prefix, uint64_t n, common::LeafTree* tree = nullptr) {
    common::LeafTree t;
    for (uint64_t i = 0; i < n; ++i) t.Add(common::LeafHash(prefix + std::to_string(i)));
    if (tree) *tree = t;
    std::string body = common::CheckpointBody({"fed.test/node/360102", n, t.Root(n)});
    return body + "\n" + common::SignNoteLine(body, "fed.test/node/360102", *x_);
  }

  v1::EvidenceBundle Fork(const std::string& earlier, const std::string& now) {
    v1::EvidenceBundle b;
    b.set_status("FORK");
    b.set_federation("fed.test");
    b.set_origin("360102");
    b.set_earlier_checkpoint(earlier);
    auto* c = b.add_checkpoints();
    c->set_jurisdiction("360102");
    c->set_note(now);
    return b;
  }

  std::shared_ptr<const common::SigningKey> x_ = common::SigningKey::Generate();
  std::shared_ptr<const common::SigningKey> y_ = common::SigningKey::Generate();
  std::shared_ptr<const common::SigningKey> z_ = common::SigningKey::Generate();
  std::unique_ptr<common::Directory> dir_;
};

TEST_F(BundleTest, ConsistentCheckpointsWithAFailingProofAreNotAFork) {
  // Two honest checkpoints (3 and 5 leaves of one history) and a garbage proof.
  v1::EvidenceBundle b = Fork(Note("a", 3), Note("a", 5));
  b.add_consistency_proof(std::string(32, 'g'));
  EXPECT_FALSE(VerifyBundle(b, *dir_).ok());
  // Swapped order, no proof at all.
  EXPECT_FALSE(VerifyBundle(Fork(Note("a", 5), Note("a", 3)), *dir_).ok());
  // A prefix root equal to the signed one proves nothing either.
  common::LeafTree t;
  v1::EvidenceBundle same = Fork(Note("a", 3), Note("a", 5, &t));
  same.set_prefix_root(t.Root(3));
  auto same_proof = common::ConsistencyProof(3, 5, t.Subtree());
  ASSERT_TRUE(same_proof.ok());
  for (auto& h : *same_proof) same.add_consistency_proof(h);
  EXPECT_FALSE(VerifyBundle(same, *dir_).ok());
}

TEST_F(BundleTest, RealForkIsShown) {
  common::LeafTree t;
  v1::EvidenceBundle b = Fork(Note("old", 3), Note("new", 5, &t));
  b.set_prefix_root(t.Root(3));
  auto proof = common::ConsistencyProof(3, 5, t.Subtree());
  ASSERT_TRUE(proof.ok());
  for (auto& h : *proof) b.add_consistency_proof(h);
  auto report = VerifyBundle(b, *dir_);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_NE(report->back().find("FORK"), std::string::npos);
  // The same with the earlier checkpoint signed by another key is refused.
  std::string body = common::CheckpointBody({"fed.test/node/360102", 3, common::Sha256("x")});
  b.set_earlier_checkpoint(body + "\n" + common::SignNoteLine(body, "fed.test/node/360102", *z_));
  EXPECT_FALSE(VerifyBundle(b, *dir_).ok());
}

TEST_F(BundleTest, ClaimsNeedBoundSignedEvidenceAndNeverCrash) {
  v1::EvidenceBundle b;
  b.set_federation("fed.test");
  b.set_origin("360102");
  b.set_destination("440305");
  b.set_seq(5);
  b.set_status("UNSUPPORTED");
  b.add_receipts();  // an empty receipt is not evidence of anything
  EXPECT_FALSE(VerifyBundle(b, *dir_).ok());
  b.set_status("DUPLICATE");
  EXPECT_FALSE(VerifyBundle(b, *dir_).ok());
  b.set_status("SPLIT_VIEW");  // no checkpoint of the origin at all: refused, no crash
  EXPECT_FALSE(VerifyBundle(b, *dir_).ok());
  b.set_status("LOG_CORRUPT");
  EXPECT_FALSE(VerifyBundle(b, *dir_).ok());
  b.set_status("CONFLICT");  // manifests signed by a third node do not bind x
  v1::BatchManifest m;
  m.set_origin("110101");
  m.set_destination("440305");
  m.set_first_seq(5);
  m.set_last_seq(5);
  m.add_digests(common::Sha256("a"));
  auto* s = b.add_manifests();
  s->set_message(m.SerializeAsString());
  s->set_signature(z_->Sign(common::kManifestContext, s->message()));
  EXPECT_FALSE(VerifyBundle(b, *dir_).ok());
}

}  // namespace
}  // namespace caseway::client::audit
