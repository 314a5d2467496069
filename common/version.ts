// iofilter's version (the agent's and iofilterctl's), from package.json (source and dist layouts alike).
import * as fs from 'node:fs';
import { findUp } from './find-up';

const pkg = findUp(__dirname, 'package.json');
export const version: string = pkg ? JSON.parse(fs.readFileSync(pkg, 'utf8')).version : 'unknown';
