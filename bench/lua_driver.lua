-- The long-running Lua process of the release-stream and patch-coverage
-- benchmarks: reads one command per line on stdin, answers on stdout, ends
-- each answer with "@@done <ok|err> <message>".  Everything it needs is a
-- local: Lua's test suite (testes/all.lua) erases the globals at its end, and
-- the driver puts them back after each command.
--   eval <chunk>      run a one-line chunk, print what it returns
--   file <path>       dofile(path), in protected mode
--   tests <list>      dofile of each named file of the current directory, with
--                     _U = true (the suite's portable user tests)
--   work <seconds>    a standard-library workload running for that long
local stdin, stdout, io_input, io_output = io.stdin, io.stdout, io.input, io.output
local load, pcall, xpcall, dofile, tostring, select, pairs, type =
      load, pcall, xpcall, dofile, tostring, select, pairs, type
local clock, concat, traceback = os.clock, table.concat, debug.traceback
local sethook, gmatch, match = debug.sethook, string.gmatch, string.match
local setmetatable_of = debug.setmetatable
local G = _G

local saved = {}
for k, v in pairs(G) do saved[k] = v end

local function restore_globals()
  for k in pairs(G) do
    if saved[k] == nil and k ~= "_U" then G[k] = nil end
  end
  for k, v in pairs(saved) do G[k] = v end
  sethook()                 -- all.lua leaves a hook set
  -- events.lua gives nil, booleans, numbers and functions metatables and
  -- expects none when it starts: a fresh state has none, so neither has a rerun
  setmetatable_of(nil, nil); setmetatable_of(false, nil)
  setmetatable_of(0, nil); setmetatable_of(print, nil)
  io_input(stdin)           -- files.lua redirects and closes the default files
  io_output(stdout)
end

local function answer(ok, message)
  stdout:write("@@done ", ok and "ok" or "err", " ",
               (tostring(message or "")):gsub("\n", " | "), "\n")
  stdout:flush()
end

local function workload(seconds)
  -- strings, tables, closures, coroutines, pattern matching, math, utf8, sort
  local stop, rounds, acc = clock() + seconds, 0, 0
  while clock() < stop do
    local t = {}
    for i = 1, 2000 do t[i] = string.format("%05d:%s", (i * 7919) % 2000, ("x"):rep(i % 7)) end
    table.sort(t)
    local joined = concat(t, ",", 1, 200)
    for w in gmatch(joined, "(%d+):") do acc = acc + tonumber(w) % 3 end
    local co = coroutine.wrap(function(n) for i = 1, n do coroutine.yield(i * i) end end)
    local s = 0
    s = s + co(50)
    for _ = 2, 50 do s = s + co() end
    acc = acc + s % 11 + math.floor(math.sqrt(rounds + 1)) + utf8.len("héllo")
    local m = setmetatable({}, {__index = function(_, k) return k * 2 end})
    acc = acc + m[rounds % 5]
    rounds = rounds + 1
  end
  return rounds, acc
end

while true do
  local line = stdin:read("l")
  if not line then break end
  local command, argument = match(line, "^(%S+)%s*(.*)$")
  local ok, result
  if command == "eval" then
    local chunk, err = load(argument, "=eval")
    if chunk then
      local results = {xpcall(chunk, traceback)}
      ok = results[1]
      local parts = {}
      for i = 2, #results do parts[#parts + 1] = tostring(results[i]) end
      result = concat(parts, "\t")
    else
      ok, result = false, err
    end
  elseif command == "file" then
    ok, result = xpcall(dofile, traceback, argument)
  elseif command == "tests" then
    ok = true
    for name in gmatch(argument, "%S+") do
      G._U = true           -- the suite's portable "user tests" (all.lua erases it at its end)
      local fine, err = xpcall(dofile, traceback, name)
      restore_globals()
      if not fine then ok, result = false, name .. ": " .. tostring(err) break end
    end
  elseif command == "work" then
    ok, result = pcall(workload, tonumber(argument) or 1)
  else
    ok, result = false, "unknown command " .. tostring(command)
  end
  restore_globals()
  answer(ok, result)
end
