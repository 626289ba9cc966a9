import test from 'ava';
import { negotiateOptions } from '../../src/tftp/negotiate.js';

const limits = { blksizeMax: 1468, windowsizeMax: 16, timeoutMs: 1000 };
const negotiations: Array<[string, Array<[string, string]>, number | undefined, Partial<ReturnType<typeof negotiateOptions>>]> = [
  ['no options', [], 100, { blksize: 512, windowsize: 1, oack: undefined }],
  [
    'edk2 probe',
    [
      ['tsize', '0'],
      ['blksize', '1468'],
      ['windowsize', '4'],
    ],
    173792,
    {
      blksize: 1468,
      windowsize: 4,
      tsize: 173792,
      oack: [
        ['tsize', '173792'],
        ['blksize', '1468'],
        ['windowsize', '4'],
      ],
    },
  ],
  ['blksize above cap', [['blksize', '65464']], 1, { blksize: 1468, oack: [['blksize', '1468']] }],
  ['blksize above rfc max', [['blksize', '99999']], 1, { blksize: 1468 }],
  ['blksize 8', [['blksize', '8']], 1, { blksize: 8, oack: [['blksize', '8']] }],
  ['blksize 7 ignored', [['blksize', '7']], 1, { blksize: 512, oack: undefined }],
  ['blksize 0 ignored', [['blksize', '0']], 1, { blksize: 512, oack: undefined }],
  ['blksize garbage ignored', [['blksize', '1e3']], 1, { blksize: 512, oack: undefined }],
  ['blksize negative ignored', [['blksize', '-512']], 1, { blksize: 512, oack: undefined }],
  [
    'case-insensitive names',
    [
      ['BLKSIZE', '1024'],
      ['TSize', '0'],
    ],
    7,
    {
      blksize: 1024,
      tsize: 7,
      oack: [
        ['blksize', '1024'],
        ['tsize', '7'],
      ],
    },
  ],
  [
    'first duplicate wins',
    [
      ['blksize', '1024'],
      ['blksize', '8'],
    ],
    7,
    { blksize: 1024 },
  ],
  ['tsize unknown size', [['tsize', '0']], undefined, { tsize: undefined, oack: undefined }],
  ['timeout 1..255', [['timeout', '3']], 1, { timeoutMs: 3000, oack: [['timeout', '3']] }],
  ['timeout 0 ignored', [['timeout', '0']], 1, { timeoutMs: 1000, oack: undefined }],
  ['timeout 256 ignored', [['timeout', '256']], 1, { timeoutMs: 1000, oack: undefined }],
  ['windowsize capped', [['windowsize', '64']], 1, { windowsize: 16, oack: [['windowsize', '16']] }],
  ['windowsize 0 ignored', [['windowsize', '0']], 1, { windowsize: 1, oack: undefined }],
  ['windowsize 65536 ignored', [['windowsize', '65536']], 1, { windowsize: 1, oack: undefined }],
  [
    'unknown option ignored',
    [
      ['rollover', '0'],
      ['multicast', ''],
    ],
    1,
    { oack: undefined },
  ],
];

for (const [name, options, size, expected] of negotiations) {
  test(`negotiateOptions: ${name}`, (t) => {
    const result = negotiateOptions(options, limits, size);
    for (const [key, value] of Object.entries(expected)) t.deepEqual(result[key as keyof typeof result], value, key);
  });
}
