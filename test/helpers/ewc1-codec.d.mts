// Types of ewc1-codec.mjs for the TypeScript tests.
export declare const MAX_PLAIN: number;
export declare class Ewc1Error extends Error {}
export declare class Ewc1Sealer {
  constructor(key: Buffer, iv: Buffer, seq?: number);
  seq: bigint;
  record(plain: Buffer): Buffer;
  records(data: Buffer, chunk?: number): Buffer[];
  end(): Buffer;
}
export declare class Ewc1Opener {
  constructor(key: Buffer, iv: Buffer, seq?: number);
  seq: bigint;
  ended: boolean;
  push(bytes: Buffer): Buffer[];
  finish(): void;
}
