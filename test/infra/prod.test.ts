/**
 * The prod stack: the whole program under mocks (config from
 * Pulumi.prod.yaml, set before the program is imported), every invariant.
 */
import test from 'ava';
import { stackInvariants } from './invariants.js';

stackInvariants(test, 'prod');
