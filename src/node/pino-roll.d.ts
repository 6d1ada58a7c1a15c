// pino-roll ships no types: the part of its API node/logger.ts uses.
declare module 'pino-roll' {
  import type { DestinationStream } from 'pino';

  interface RollOptions {
    readonly file: string;
    readonly size?: string | number;
    readonly frequency?: string | number;
    readonly extension?: string;
    readonly limit?: { readonly count?: number; readonly removeOtherLogFiles?: boolean };
    readonly mkdir?: boolean;
    readonly symlink?: boolean;
    /** Passed on to the sonic-boom stream it makes: pino-roll rolls a file only after an asynchronous write drains. */
    readonly sync?: boolean;
    readonly mode?: number;
  }

  export default function roll(options: RollOptions): Promise<DestinationStream>;
}
