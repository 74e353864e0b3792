#pragma once
// Secrets sealed with a passphrase, for the credentials file: Argon2id
// derives a key from the passphrase and a random salt, XChaCha20-Poly1305
// seals the secret (libsodium). A sealed value is one printable string that
// carries its own parameters, salt and nonce:
//
//   $xfer-sealed$v1$argon2id$t=2,m=65536$<salt>$<nonce>$<ciphertext>
//
// (base64, no padding; m in KiB). Wrong passphrase and tampering look the
// same: kPermission "wrong passphrase or damaged secret". Thread-safe.

#include <functional>
#include <string>
#include <string_view>

#include "xfer/core/result.hpp"

namespace xfer {

inline constexpr std::string_view kSealedPrefix = "$xfer-sealed$";

bool is_sealed(std::string_view value);

// Argon2id costs: libsodium's "interactive" limits by default (about 0.1 s
// and 64 MiB here); tests may lower them.
struct SealCost {
  unsigned long long ops = 2;
  std::size_t mem_bytes = 64ull << 20;
};

Result<std::string> seal_secret(std::string_view secret, std::string_view passphrase,
                                SealCost cost = {});
// The costs come from the sealed value itself, bounded (at most 1 GiB of
// memory and 10 passes) so a crafted value cannot make us allocate without
// limit.
Result<std::string> unseal_secret(std::string_view sealed, std::string_view passphrase);

// Where a passphrase comes from, in order: the callback given (a CLI's
// --passphrase-file or terminal prompt), else $XFER_PASSPHRASE. kPermission
// "... sealed; set XFER_PASSPHRASE ..." when none gives one.
using PassphraseSource = std::function<Result<std::string>()>;
Result<std::string> passphrase_from(const PassphraseSource& source);

// The first line of `path` (without its newline), for --passphrase-file.
Result<std::string> read_passphrase_file(const std::string& path);
// Asks on the terminal (/dev/tty) with echo off; kUnavailable without one.
Result<std::string> prompt_passphrase(const std::string& prompt);

}  // namespace xfer
