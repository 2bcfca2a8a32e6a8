'use strict';
// DELTA-TAGS.md §10 golden vectors through the decoders sockudo-js ships (fossil-delta 2.0.0,
// @ably/vcdiff-decoder 1.0.6): the vectors the Rust unit tests (src/delta/algorithm.rs) also decode. The
// negative VCDIFF vectors (Adler-32 window checksum) decode to wrong bytes without an error, which is why the
// server's encoder must never emit the checksum (asserted on its header in the Rust test).

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fossil = require('fossil-delta');
const vcdiff = require('@ably/vcdiff-decoder');

const FOSSIL = {
  "F1": {
    "base": "{\"event\":\"price-update\",\"channel\":\"market-data\",\"data\":\"{\\\"asset\\\":\\\"BTC\\\",\\\"price\\\":\\\"100.00\\\",\\\"volume\\\":1000,\\\"exchange\\\":\\\"binance\\\",\\\"ts\\\":1700000000000}\"}",
    "target": "{\"event\":\"price-update\",\"channel\":\"market-data\",\"data\":\"{\\\"asset\\\":\\\"BTC\\\",\\\"price\\\":\\\"100.01\\\",\\\"volume\\\":1005,\\\"exchange\\\":\\\"binance\\\",\\\"ts\\\":1700000000250}\"}",
    "delta_b64": "MlcKMVNAMCxKOjFcIixcInZvbHVtZVwiOjEwMDVnQDFrLDY6MjUwfSJ9MnpRdFRQOw=="
  },
  "F2": {
    "base": "{\"event\":\"match_event\",\"channel\":\"match:123\",\"data\":\"{\\\"minute\\\":\\\"23.30\\\",\\\"event_type\\\":\\\"shot\\\",\\\"player\\\":\\\"Vinicius\\\",\\\"xG\\\":0.12}\",\"tags\":{\"event_type\":\"shot\",\"team\":\"Real Madrid\"}}",
    "target": "{\"event\":\"match_event\",\"channel\":\"match:123\",\"data\":\"{\\\"minute\\\":\\\"24.10\\\",\\\"event_type\\\":\\\"goal\\\",\\\"player\\\":\\\"Vinicius\\\",\\\"xG\\\":0.87}\",\"tags\":{\"event_type\":\"goal\",\"team\":\"Real Madrid\"}}",
    "delta_b64": "MncKMTRAMCxTOjQuMTBcIixcImV2ZW50X3R5cGVcIjpcImdvYWxfQDFXLDI6ODdQQDI2LFM6Z29hbCIsInRlYW0iOiJSZWFsIE1hZHJpZCJ9fTNjdF9YQzs="
  },
  "F3": {
    "base": "{\"event\":\"status\",\"channel\":\"cafe-menu\",\"data\":\"{\\\"item\\\":\\\"Café crème\\\",\\\"price\\\":\\\"3,50 €\\\",\\\"note\\\":\\\"naïve – äöü\\\",\\\"stock\\\":12}\"}",
    "target": "{\"event\":\"status\",\"channel\":\"cafe-menu\",\"data\":\"{\\\"item\\\":\\\"Café crème\\\",\\\"price\\\":\\\"3,80 €\\\",\\\"note\\\":\\\"naïve – äöü ✓\\\",\\\"stock\\\":11}\"}",
    "delta_b64": "MksKMVBAMCwxOjhfQDFRLE06IOKck1wiLFwic3RvY2tcIjoxMX0ifTM2UFFUUTs="
  }
};
const VCDIFF = {
  "X1": {
    "base": "{\"event\":\"price-update\",\"channel\":\"market-data\",\"data\":\"{\\\"asset\\\":\\\"BTC\\\",\\\"price\\\":\\\"100.00\\\",\\\"volume\\\":1000,\\\"exchange\\\":\\\"binance\\\",\\\"ts\\\":1700000000000}\"}",
    "target": "{\"event\":\"price-update\",\"channel\":\"market-data\",\"data\":\"{\\\"asset\\\":\\\"BTC\\\",\\\"price\\\":\\\"100.01\\\",\\\"volume\\\":1005,\\\"exchange\\\":\\\"binance\\\",\\\"ts\\\":1700000000250}\"}",
    "delta_b64": "1sPEAAABgRoAGYEgAAgIAzE1MjUwfSJ9E1wCIQITKwcAXW8="
  },
  "X2": {
    "base": "{\"event\":\"sensor\",\"channel\":\"iot-sensors-7\",\"data\":\"{\\\"device_id\\\":\\\"dev-42\\\",\\\"temp\\\":21.5,\\\"humidity\\\":40,\\\"label\\\":\\\"Küche – Süd\\\",\\\"readings\\\":[1,2,3,4,5,6,7,8]}\"}",
    "target": "{\"event\":\"sensor\",\"channel\":\"iot-sensors-7\",\"data\":\"{\\\"device_id\\\":\\\"dev-42\\\",\\\"temp\\\":21.7,\\\"humidity\\\":41,\\\"label\\\":\\\"Küche – Süd\\\",\\\"readings\\\":[1,2,3,4,5,6,7,8,9]}\"}",
    "delta_b64": "1sPEAAABgScAJYEtABcGAjcsXCJodW1pZGl0eVwiOjQxLDldfSJ9E1oSEzwHAGs="
  }
};
const VCDIFF_ADLER32 = {
  "X1": "1sPEAAAFgRoAHYEgAAgIAxlnMOcxNTI1MH0ifRNcAiECEysHAF1v",
  "X2": "1sPEAAAFgScAKYEtABcGAlXxN8M3LFwiaHVtaWRpdHlcIjo0MSw5XX0ifRNaEhM8BwBr"
};

const b64 = (s) => Buffer.from(s, 'base64');

test('fossil golden vectors rebuild the target with fossil-delta; a changed base fails its checksum', () => {
  for (const [name, v] of Object.entries(FOSSIL)) {
    const out = Buffer.from(fossil.applyDelta(Buffer.from(v.base), b64(v.delta_b64))).toString('utf8');
    assert.equal(out, v.target, name);
    const bad = Buffer.from(v.base);
    bad[10] ^= 1; // inside the event name, which every delta copies from the base
    assert.throws(() => fossil.applyDelta(bad, b64(v.delta_b64)), undefined, `${name}: checksum`);
  }
});

test('VCDIFF golden vectors rebuild the target with @ably/vcdiff-decoder; with Adler-32 they silently do not', () => {
  for (const [name, v] of Object.entries(VCDIFF)) {
    const decode = (d) => Buffer.from(vcdiff.decode(new Uint8Array(b64(d)), new Uint8Array(Buffer.from(v.base)))).toString('utf8');
    assert.equal(decode(v.delta_b64), v.target, name);
    assert.deepEqual([...b64(v.delta_b64).subarray(0, 6)], [0xd6, 0xc3, 0xc4, 0x00, 0x00, 0x01], `${name}: header`);
    assert.notEqual(decode(VCDIFF_ADLER32[name]), v.target, `${name} with Adler-32`);
  }
});
