'use strict';
// With SOCKUDO_TEST_APP_DRIVER=postgresql|mysql|dynamodb the conformance suite runs with every app read from
// that database: startServer() writes the test's apps into a fresh table in Sockudo's schema (our own SQL /
// item layout) and starts the server with that app manager. The databases are the throwaway instances of
// scripts/services/*.sh (SOCKUDO_TEST_POSTGRES_PORT, SOCKUDO_TEST_MYSQL_PORT, SOCKUDO_TEST_DYNAMODB_URL).

const { execFileSync } = require('node:child_process');

const DRIVER = process.env.SOCKUDO_TEST_APP_DRIVER || '';

const INT_COLUMNS = [
  'max_connections', 'max_backend_events_per_second', 'max_client_events_per_second',
  'max_read_requests_per_second', 'max_presence_members_per_channel', 'max_presence_member_size_in_kb',
  'max_channel_name_length', 'max_event_channels_at_once', 'max_event_name_length', 'max_event_payload_in_kb',
  'max_event_batch_size',
];
const BOOL_COLUMNS = ['enable_client_messages', 'enabled', 'enable_user_authentication', 'enable_watchlist_events'];
const JSON_COLUMNS = ['webhooks', 'allowed_origins', 'policy'];

let tables = 0;

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: start the database with scripts/services/*.sh`);
  return value;
}

function sqlValue(column, value) {
  if (value === undefined || value === null) return 'NULL';
  if (JSON_COLUMNS.includes(column)) return `'${JSON.stringify(value).replace(/'/g, "''")}'`;
  if (BOOL_COLUMNS.includes(column)) return value === true || value === 'true' ? 'TRUE' : 'FALSE';
  if (INT_COLUMNS.includes(column)) return String(Number(value));
  return `'${String(value).replace(/'/g, "''")}'`;
}

/** Fields with no column of their own, kept in Sockudo's `policy` JSON column. */
const POLICY_FEATURES = ['enable_subscription_count'];

/** The app as table columns; the NOT NULL columns get what the memory driver would use when unset. */
function columns(app) {
  const row = { max_connections: 0, max_client_events_per_second: 10, enable_client_messages: false, enabled: true };
  for (const [k, v] of Object.entries(app)) {
    if (POLICY_FEATURES.includes(k)) {
      row.policy = row.policy || {};
      row.policy.features = { ...(row.policy.features || {}), [k]: v };
    } else if (k === 'channel_delta_compression') {
      row.policy = row.policy || {};
      row.policy.channels = { ...(row.policy.channels || {}), channel_delta_compression: v };
    } else if ([...INT_COLUMNS, ...BOOL_COLUMNS, ...JSON_COLUMNS, 'id', 'key', 'secret'].includes(k)) {
      row[k] = v;
    } else {
      throw new Error(`app field ${k} has no column in Sockudo's applications table`);
    }
  }
  return row;
}

function psql(sql) {
  execFileSync('psql', ['-h', '127.0.0.1', '-p', need('SOCKUDO_TEST_POSTGRES_PORT'), '-U', 'postgres',
    '-d', 'sockudo', '-v', 'ON_ERROR_STOP=1', '-qc', sql]);
}

function mariadb(sql) {
  execFileSync('mariadb', ['--no-defaults', '-h', '127.0.0.1', '-P', need('SOCKUDO_TEST_MYSQL_PORT'),
    '-u', 'sockudo', '-psockudo', 'sockudo', '-e', sql]);
}

async function dynamo(action, body) {
  const r = await fetch(need('SOCKUDO_TEST_DYNAMODB_URL'), {
    method: 'POST',
    headers: {
      'X-Amz-Target': `DynamoDB_20120810.${action}`,
      'Content-Type': 'application/x-amz-json-1.0',
      Authorization: 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x',
    },
    body: JSON.stringify(body),
  });
  if (r.status !== 200) throw new Error(`${action}: ${r.status} ${await r.text()}`);
}

const SQL_COLUMNS = `id VARCHAR(255) PRIMARY KEY, {KEY} VARCHAR(255) UNIQUE NOT NULL, secret VARCHAR(255) NOT NULL,
  max_connections INTEGER NOT NULL DEFAULT 100, enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
  enabled BOOLEAN NOT NULL DEFAULT TRUE, max_backend_events_per_second INTEGER, max_client_events_per_second INTEGER NOT NULL DEFAULT 100,
  max_read_requests_per_second INTEGER, max_presence_members_per_channel INTEGER, max_presence_member_size_in_kb INTEGER,
  max_channel_name_length INTEGER, max_event_channels_at_once INTEGER, max_event_name_length INTEGER,
  max_event_payload_in_kb INTEGER, max_event_batch_size INTEGER, enable_user_authentication BOOLEAN,
  enable_watchlist_events BOOLEAN, policy {JSON}, webhooks {JSON}, allowed_origins {JSON},
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP`;

/**
 * Writes `apps` into a fresh table of the configured database; returns the server environment that reads
 * them, or null when the suite runs with the memory driver.
 */
async function mirrorApps(apps) {
  if (!DRIVER) return null;
  tables += 1;
  const table = `js_apps_${process.pid}_${tables}`;
  const rows = apps.map(columns);
  if (DRIVER === 'postgresql' || DRIVER === 'mysql') {
    const quote = DRIVER === 'mysql' ? (c) => `\`${c}\`` : (c) => c;
    const run = DRIVER === 'mysql' ? mariadb : psql;
    const schema = SQL_COLUMNS.replace('{KEY}', quote('key')).replace(/\{JSON\}/g, DRIVER === 'mysql' ? 'JSON' : 'JSONB');
    let sql = `CREATE TABLE ${table} (${schema});`;
    for (const row of rows) {
      const cols = Object.keys(row);
      sql += `INSERT INTO ${table} (${cols.map(quote).join(', ')}) VALUES (${cols.map((c) => sqlValue(c, row[c])).join(', ')});`;
    }
    run(sql);
    const prefix = DRIVER === 'mysql' ? 'DATABASE_MYSQL' : 'DATABASE_POSTGRES';
    return {
      APP_MANAGER_DRIVER: DRIVER,
      [`${prefix}_HOST`]: '127.0.0.1',
      [`${prefix}_PORT`]: DRIVER === 'mysql' ? need('SOCKUDO_TEST_MYSQL_PORT') : need('SOCKUDO_TEST_POSTGRES_PORT'),
      [`${prefix}_USERNAME`]: DRIVER === 'mysql' ? 'sockudo' : 'postgres',
      [`${prefix}_PASSWORD`]: DRIVER === 'mysql' ? 'sockudo' : '',
      [`${prefix}_DATABASE`]: 'sockudo',
      [`${prefix}_TABLE_NAME`]: table,
    };
  }
  if (DRIVER === 'dynamodb') {
    await dynamo('CreateTable', {
      TableName: table,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
    });
    for (const row of rows) {
      const item = {};
      for (const [c, v] of Object.entries(row)) {
        if (v === undefined || v === null) continue;
        if (JSON_COLUMNS.includes(c)) item[c] = { S: JSON.stringify(v) };
        else if (BOOL_COLUMNS.includes(c)) item[c] = { BOOL: v === true || v === 'true' };
        else if (INT_COLUMNS.includes(c)) item[c] = { N: String(Number(v)) };
        else item[c] = { S: String(v) };
      }
      await dynamo('PutItem', { TableName: table, Item: item });
    }
    return {
      APP_MANAGER_DRIVER: 'dynamodb',
      DATABASE_DYNAMODB_REGION: 'us-east-1',
      DATABASE_DYNAMODB_TABLE_NAME: table,
      DATABASE_DYNAMODB_ENDPOINT_URL: need('SOCKUDO_TEST_DYNAMODB_URL'),
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    };
  }
  throw new Error(`SOCKUDO_TEST_APP_DRIVER=${DRIVER}: use postgresql, mysql or dynamodb`);
}

module.exports = { mirrorApps, DRIVER };
