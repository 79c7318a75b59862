/** Prints the configuration reference table generated from the config schema. */
import { configurationReference } from '../app/config/reference.js';

console.log(configurationReference());
