import { ciPart } from './ci-part.js';

ciPart(1);
