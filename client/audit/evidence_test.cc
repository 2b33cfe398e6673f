// The rules of client/audit/evidence.h: when a signed manifest or receipt counts for a channel.
#include "client/audit/evidence.h"

#include <gtest/gtest.h>

#include "common/digest.h"
#include "common/signing.h"

namespace caseway::client::audit {
namespace {

class EvidenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    v1::FederationDirectory d;
    d.set_federation("fed.test");
    for (auto [j, k] : {std::pair<const char*, const common::SigningKey*>{"360102", x_.get()},
                        {"440305", y_.get()}}) {
      auto* n = d.add_nodes();
      n->set_jurisdiction(j);
      n->set_signing_key(k->PublicKey());
    }
    dir_ = std::make_unique<common::Directory>(*common::Directory::FromProto(d, "test"));
  }

  v1::Signed Manifest(const std::string& origin, const std::string& dest, uint64_t first,
                      uint64_t last, int digests, const common::SigningKey& key) {
    v1::BatchManifest m;
    m.set_origin(origin);
    m.set_destination(dest);
    m.set_first_seq(first);
    m.set_last_seq(last);
    for (int i = 0; i < digests; ++i) m.add_digests(common::Sha256(std::to_string(i)));
    v1::Signed s;
    s.set_message(m.SerializeAsString());
    s.set_signature(key.Sign(common::kManifestContext, s.message()));
    return s;
  }

  std::shared_ptr<const common::SigningKey> x_ = common::SigningKey::Generate();
  std::shared_ptr<const common::SigningKey> y_ = common::SigningKey::Generate();
  std::unique_ptr<common::Directory> dir_;
};

TEST_F(EvidenceTest, ManifestCountsOnlyForItsChannelSignedByItsOrigin) {
  auto good = Manifest("360102", "440305", 5, 7, 3, *x_);
  auto m = OpenManifest(good, *dir_, "360102", "440305");
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(Covers(*m, 6));
  EXPECT_EQ(SeqDigest(*m, 7), common::Sha256("2"));
  EXPECT_FALSE(OpenManifest(good, *dir_, "360102", "360111")) << "another destination";
  EXPECT_FALSE(OpenManifest(good, *dir_, "440305", "360102")) << "another origin";
  EXPECT_FALSE(OpenManifest(Manifest("360102", "440305", 5, 7, 3, *y_), *dir_, "360102", "440305"))
      << "signed by the destination's key";
  EXPECT_FALSE(OpenManifest(Manifest("360102", "440305", 5, 7, 2, *x_), *dir_, "360102", "440305"))
      << "one digest missing";
  EXPECT_FALSE(OpenManifest(Manifest("360102", "440305", 1, kMaxRange + 1, 0, *x_), *dir_, "360102",
                            "440305"))
      << "a range no batch has";
  v1::Signed as_receipt = good;
  as_receipt.set_signature(x_->Sign(common::kReceiptContext, good.message()));
  EXPECT_FALSE(OpenManifest(as_receipt, *dir_, "360102", "440305")) << "receipt context";
}

TEST_F(EvidenceTest, ReceiptCountsOnlyWhenSignedByTheReceiverForThisOrigin) {
  v1::Receipt r;
  r.set_receiver("440305");
  r.set_origin("360102");
  r.set_first_seq(5);
  r.set_last_seq(7);
  v1::Signed s;
  s.set_message(r.SerializeAsString());
  s.set_signature(y_->Sign(common::kReceiptContext, s.message()));
  EXPECT_TRUE(OpenReceipt(s, *dir_, "360102", "440305").has_value());
  EXPECT_FALSE(OpenReceipt(s, *dir_, "360111", "440305")) << "another origin";
  EXPECT_FALSE(OpenReceipt(s, *dir_, "440305", "360102")) << "the other direction";
  s.set_signature(x_->Sign(common::kReceiptContext, s.message()));
  EXPECT_FALSE(OpenReceipt(s, *dir_, "360102", "440305")) << "signed by the origin";
}

}  // namespace
}  // namespace caseway::client::audit
