/** Errors of the nftables data plane; each has a stable `code`. */

export type NftErrorCode =
  | 'ERR_NFT_NOT_FOUND'
  | 'ERR_NFT_EXISTS'
  | 'ERR_NFT_BUSY'
  | 'ERR_NFT_INVALID'
  | 'ERR_NFT_UNAVAILABLE'
  | 'ERR_NFT_APPLY';

export class NftError extends Error {
  constructor(readonly code: NftErrorCode, message: string, readonly stderr = '', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NftError';
  }
}

/** Map `nft` stderr to a code: the kernel's errno text is the stable part. */
export function classifyNftStderr(stderr: string): NftErrorCode {
  if (/No such file or directory/i.test(stderr)) return 'ERR_NFT_NOT_FOUND';
  if (/File exists/i.test(stderr)) return 'ERR_NFT_EXISTS';
  if (/Device or resource busy/i.test(stderr)) return 'ERR_NFT_BUSY';
  if (/Operation not supported|Protocol not supported|Operation not permitted/i.test(stderr)) return 'ERR_NFT_UNAVAILABLE';
  if (/syntax error|Invalid|Unknown|unexpected|datatype mismatch|conflicting|Parsing command/i.test(stderr)) return 'ERR_NFT_INVALID';
  return 'ERR_NFT_APPLY';
}

/** An NftError from nft's error text (CLI stderr or libnftables' error buffer); the message keeps nft's first error line. */
export function nftFailure(what: string, errText: string): NftError {
  const first = errText.split('\n').find((l) => l.includes('Error')) ?? errText.trim().split('\n')[0] ?? '';
  return new NftError(classifyNftStderr(errText), `${what}: ${first.trim()}`, errText);
}

export const isNotFound = (e: unknown): boolean => e instanceof NftError && e.code === 'ERR_NFT_NOT_FOUND';
export const isExists = (e: unknown): boolean => e instanceof NftError && e.code === 'ERR_NFT_EXISTS';
