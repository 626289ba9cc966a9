// ESLint flat config for the appliance (run through scripts/lint, from the repository root).
// typescript-eslint's recommended rules without type information: TypeScript 7 (native) does the
// type checking in `npm test`; this catches what the compiler does not (unused expressions,
// floating-promise shapes the rules below see syntactically, stray `any`).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'tools/**', 'test/fixtures/**', 'web/vendor/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      // Parameters named `_x` are deliberately unused (callbacks with a fixed shape).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
      // Tests read loosely typed JSON; `any` stays visible in review instead of failing the lint.
      '@typescript-eslint/no-explicit-any': 'warn',
      'no-control-regex': 'off',
      eqeqeq: ['error', 'always'],
      // A `let` read by a closure before its one assignment (teardown, timers) cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', 'bin/appliance'],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly', setImmediate: 'readonly' },
    },
  },
);
