'use strict';
// A delta-decoding client modelled line by line on sockudo-js (DELTA-TAGS.md §4): it keeps the raw text of
// every tracked message with the metadata stripped by the client's own regexes, picks the base exactly as the
// client does, and decodes with the client's own packages (fossil-delta, @ably/vcdiff-decoder).

const fossil = require('fossil-delta');
const vcdiff = require('@ably/vcdiff-decoder');
const raw = require('./raw');

const FIFO = 30;

function strip(text) {
  return text
    .replace(/,"__delta_seq":\d+/g, '')
    .replace(/"__delta_seq":\d+,/g, '')
    .replace(/,"__conflation_key":"[^"]*"/g, '')
    .replace(/"__conflation_key":"[^"]*",/g, '');
}

/** Wraps a raw connection: `c.events` collects reconstructed envelopes per channel as texts. */
async function deltaConn(port) {
  const c = await raw.rawConn(port);
  c.channels = new Map(); // channel -> { conflation, base, keys: Map(key -> [{seq, text}]) }
  c.events = new Map(); // channel -> [envelope text]
  c.stats = { full: 0, delta: 0, plain: 0, syncErrors: 0, decodeErrors: [], bytes: 0 };
  const state = (ch) => {
    if (!c.channels.has(ch)) c.channels.set(ch, { conflation: false, base: null, keys: new Map() });
    return c.channels.get(ch);
  };
  const emit = (ch, text) => {
    if (!c.events.has(ch)) c.events.set(ch, []);
    c.events.get(ch).push(text);
  };
  c.ws.on('message', (data) => {
    const text = data.toString();
    const msg = JSON.parse(text);
    // As sockudo-js: any enabled reply (global or per channel) sets the algorithm of frames that omit it.
    if (msg.event === 'pusher:delta_compression_enabled' && msg.data && msg.data.algorithm) {
      c.defaultAlgorithm = msg.data.algorithm;
      return;
    }
    if (!msg.channel || msg.event.startsWith('pusher_internal:') || msg.event === 'pusher:cache_miss') return;
    c.stats.bytes += Buffer.byteLength(text);
    if (msg.event === 'pusher:delta') {
      const d = msg.data;
      const st = state(msg.channel);
      let base = null;
      if (st.conflation) {
        const list = st.keys.get(d.conflation_key || '') || [];
        const hit = list.find((e) => e.seq === d.base_index);
        base = hit ? hit.text : null;
      } else {
        base = st.base;
      }
      if (base === null) {
        c.stats.syncErrors++;
        c.send({ event: 'pusher:delta_sync_error', data: { channel: msg.channel } });
        c.channels.delete(msg.channel);
        return;
      }
      const bytes = Buffer.from(d.delta, 'base64');
      const algorithm = d.algorithm || c.defaultAlgorithm || 'fossil';
      let out;
      try {
        out = algorithm === 'xdelta3'
          ? Buffer.from(vcdiff.decode(new Uint8Array(bytes), new Uint8Array(Buffer.from(base)))).toString('utf8')
          : Buffer.from(fossil.applyDelta(Buffer.from(base), bytes)).toString('utf8');
      } catch (e) {
        c.stats.decodeErrors.push(String(e));
        return;
      }
      c.stats.delta++;
      c.lastAlgorithm = algorithm;
      if (st.conflation) {
        const key = d.conflation_key || '';
        const list = st.keys.get(key) || [];
        list.push({ seq: d.seq, text: out });
        while (list.length > FIFO) list.shift();
        st.keys.set(key, list);
      } else {
        st.base = out;
      }
      emit(msg.channel, out);
      return;
    }
    if (typeof msg.__delta_seq === 'number') {
      c.stats.full++;
      const st = state(msg.channel);
      const stripped = strip(text);
      if (msg.__conflation_key !== undefined) {
        st.conflation = true;
        const list = st.keys.get(msg.__conflation_key) || [];
        list.push({ seq: msg.__delta_seq, text: stripped });
        while (list.length > FIFO) list.shift();
        st.keys.set(msg.__conflation_key, list);
      } else {
        st.base = stripped;
      }
      emit(msg.channel, stripped);
      return;
    }
    c.stats.plain++;
    emit(msg.channel, text);
  });
  c.enableDelta = async () => {
    c.send({ event: 'pusher:enable_delta_compression', data: { algorithms: ['fossil', 'xdelta3'] } });
    const reply = await c.next((m) => m.event === 'pusher:delta_compression_enabled');
    c.defaultAlgorithm = reply.data.algorithm;
    return reply;
  };
  return c;
}

/** A plain raw connection that records the raw text of every channel event (the reference). */
async function plainConn(port) {
  const c = await raw.rawConn(port);
  c.events = new Map();
  c.stats = { bytes: 0 };
  c.ws.on('message', (data) => {
    const text = data.toString();
    const msg = JSON.parse(text);
    if (!msg.channel || msg.event.startsWith('pusher_internal:') || msg.event.startsWith('pusher:')) return;
    c.stats.bytes += Buffer.byteLength(text);
    if (!c.events.has(msg.channel)) c.events.set(msg.channel, []);
    c.events.get(msg.channel).push(text);
  });
  return c;
}

module.exports = { deltaConn, plainConn, strip };
