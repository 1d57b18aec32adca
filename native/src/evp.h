// OpenSSL EVP entry points for the EWC1 record pump, resolved at run time.
// The addon does not link libcrypto: Node carries its own OpenSSL (exported by the
// node binary, or libcrypto.so.3 for a distribution's node), and an addon linked
// against another copy could load a second, different OpenSSL. So the functions
// are looked up in the process (RTLD_DEFAULT), then in libcrypto.so.3, and checked
// with a known-answer test; when that fails the aead pair is reported unavailable
// and the rest of the addon works as before.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgeway {

// Opaque OpenSSL types; only pointers cross the boundary.
struct EvpCtx;
struct EvpCipher;

struct Evp {
  EvpCtx* (*ctx_new)();
  void (*ctx_free)(EvpCtx*);
  const EvpCipher* (*aes_128_gcm)();
  int (*encrypt_init)(EvpCtx*, const EvpCipher*, void* engine, const unsigned char* key, const unsigned char* iv);
  int (*decrypt_init)(EvpCtx*, const EvpCipher*, void* engine, const unsigned char* key, const unsigned char* iv);
  int (*encrypt_update)(EvpCtx*, unsigned char* out, int* outl, const unsigned char* in, int inl);
  int (*decrypt_update)(EvpCtx*, unsigned char* out, int* outl, const unsigned char* in, int inl);
  int (*encrypt_final)(EvpCtx*, unsigned char* out, int* outl);
  int (*decrypt_final)(EvpCtx*, unsigned char* out, int* outl);
  int (*ctrl)(EvpCtx*, int type, int arg, void* ptr);
  void (*cleanse)(void* p, size_t len);
};

// OpenSSL's EVP_CTRL_AEAD_* values (include/openssl/evp.h, stable since 1.1.0).
constexpr int kEvpCtrlSetIvLen = 0x9;
constexpr int kEvpCtrlGetTag = 0x10;
constexpr int kEvpCtrlSetTag = 0x11;

// The resolved functions, or nullptr with *why set (static string). Thread-safe;
// resolved once per process.
const Evp* LoadEvp(const char** why);

// Wipes key material (OPENSSL_cleanse when resolved, a volatile loop otherwise).
void Cleanse(void* p, size_t len);

}  // namespace edgeway
