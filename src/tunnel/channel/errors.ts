/** Data channel errors, each with a stable `code`. */
import { TunnelError } from '../errors.js';

export type ChannelErrorCode =
  | 'ERR_CHANNEL_HANDSHAKE'
  | 'ERR_CHANNEL_NO_PATH'
  | 'ERR_CHANNEL_CONTROL'
  | 'ERR_CHANNEL_PAIR'
  | 'ERR_CHANNEL_CLOSED'
  | 'ERR_CHANNEL_RECORD';

export class ChannelError extends TunnelError {
  override readonly code: ChannelErrorCode;
  constructor(code: ChannelErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'ChannelError';
  }
}
