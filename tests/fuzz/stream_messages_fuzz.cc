// Fuzz target: what a Subscribe stream carries. As the origin receives them: SubscribeRequest
// (open, ack with a receipt) and InboxRequest. As a subscriber receives them: a Batch, checked
// against its manifest and then entry by entry, exactly as the node checks it before storing.
// The manifest is signed here with a key of the test's, so that the checks after the signature
// are reached too.
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "caseway/v1/gateway.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "common/signing.h"
#include "common/validation.h"

namespace {

struct Keys {
  std::shared_ptr<const caseway::common::SigningKey> key;
  std::string public_key;
};

const Keys& TestKeys() {
  static const Keys* keys = [] {
    EVP_PKEY* pkey = nullptr;
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
    EVP_PKEY_keygen_init(ctx);
    EVP_PKEY_keygen(ctx, &pkey);
    EVP_PKEY_CTX_free(ctx);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    char* pem_data = nullptr;
    long n = BIO_get_mem_data(bio, &pem_data);
    std::string pem(pem_data, n);
    BIO_free(bio);
    unsigned char raw[32];
    size_t raw_len = sizeof raw;
    EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len);
    EVP_PKEY_free(pkey);
    auto* k = new Keys;
    k->key = *caseway::common::SigningKey::LoadPem(pem);
    k->public_key.assign(reinterpret_cast<char*>(raw), raw_len);
    return k;
  }();
  return *keys;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  caseway::v1::SubscribeRequest sub;
  if (sub.ParseFromString(in) && sub.has_ack()) {
    caseway::v1::Receipt receipt;
    (void)receipt.ParseFromString(sub.ack().receipt().message());
  }
  caseway::v1::InboxRequest inbox;
  (void)inbox.ParseFromString(in);
  caseway::v1::SubscribeResponse resp;
  if (resp.ParseFromString(in) && resp.has_batch()) {
    caseway::v1::Batch batch = resp.batch();
    const Keys& keys = TestKeys();
    // Unsigned as received: refused at the signature.
    if (batch.has_manifest() &&
        caseway::common::CheckBatchManifest(batch, "440305", "360102", keys.public_key).ok()) {
      __builtin_trap();
    }
    batch.mutable_manifest()->set_signature(
        keys.key->Sign(caseway::common::kManifestContext, batch.manifest().message()));
    if (caseway::common::CheckBatchManifest(batch, "440305", "360102", keys.public_key).ok()) {
      (void)caseway::common::CheckReceivedEntries(batch, "440305", "360102");
    }
  }
  return 0;
}
