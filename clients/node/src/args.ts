/**
 * Arguments as the module reads them: decimals written exactly (never in
 * exponent form with a `+`, never rounded), integers checked before anything
 * is sent. The server validates ranges and answers with its own message.
 */

/** A decimal argument (rps, burst, window, interval): a number, or a string sent as is. */
export type Decimal = number | string;

/**
 * A number as a plain decimal string: JavaScript's shortest representation
 * (0.1 is "0.1"), with any exponent expanded (1e21 is "1000000000000000000000",
 * 1e-7 is "0.0000001"). Strings are sent as they are. NaN and Infinity are
 * sent as "NaN" / "Infinity" so that the server refuses them with its message.
 */
export function decimalArg(value: Decimal, name: string): string {
  if (typeof value === "string") return value;
  if (typeof value !== "number") throw new TypeError(`${name} must be a number or a string`);
  const text = String(value);
  const m = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(text);
  if (!m) return text;
  const [, sign, int, frac = "", exp] = m;
  const digits = int + frac;
  const point = int.length + Number(exp); // position of the decimal point in `digits`
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** An integer argument (tokens, max_waiting, a TTL): a safe integer or a bigint. */
export function intArg(value: number | bigint, name: string): string {
  if (typeof value === "bigint") return value.toString();
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${String(value)}`);
  }
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`${name} ${value} is beyond 2^53: pass it as a bigint`);
  }
  return String(value);
}

/** Milliseconds as a whole number, rounded up (a timeout is never cut short). */
export function msArg(value: number, name: string): string {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number of milliseconds >= 0, got ${String(value)}`);
  }
  return intArg(Math.ceil(value), name);
}
