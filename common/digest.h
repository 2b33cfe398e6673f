// SHA-256 digests of exact bytes (OpenSSL EVP, fetched once).
#ifndef CASEWAY_COMMON_DIGEST_H_
#define CASEWAY_COMMON_DIGEST_H_

#include <string>

#include "absl/strings/string_view.h"

namespace caseway::common {

// Sha256 returns the 32-byte SHA-256 digest of `data`. Thread-safe.
std::string Sha256(absl::string_view data);

// ToHex returns lowercase hexadecimal.
std::string ToHex(absl::string_view bytes);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_DIGEST_H_
