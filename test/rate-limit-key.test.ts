import test from 'ava';
import { rateLimitKey } from '../app/http/rate-limit.js';

test('IPv4 clients are limited per address', (t) => {
  t.is(rateLimitKey('203.0.113.7'), '203.0.113.7');
  t.not(rateLimitKey('203.0.113.7'), rateLimitKey('203.0.113.8'));
});

test('IPv6 clients are limited per /64, whatever the spelling of the address', (t) => {
  const key = rateLimitKey('2001:db8:0:1::5');
  t.is(key, '2001:db8:0:1::/64');
  t.is(rateLimitKey('2001:0db8:0000:0001:aaaa:bbbb:cccc:dddd'), key);
  t.is(rateLimitKey('2001:DB8:0:1:ffff::'), key);
  t.not(rateLimitKey('2001:db8:0:2::5'), key);
  t.is(rateLimitKey('::1'), '0:0:0:0::/64');
});
