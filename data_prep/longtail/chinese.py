"""Chinese grammar of the long-tail world: numeral + measure word + CLDR noun phrase.

A mention is 一 + measure word + (size) + name: "一个红苹果", "一只小小的鹰", "一条热带鱼".
The measure word is chosen by the head of the name, its last characters: the longest suffix of
the name found in `MEASURE_WORDS` (animals 只/头/条/匹, vehicles 辆/架/艘/列, flat things
张, tools 把, flowers 朵, trees 棵, hearts and stars 颗, clothes 件/条/顶/双/副, buildings
座/家/栋, ...; table written by reading every name of the inventory), else the general 个. Sizes
are 小小的/大大的 after the measure word.
Names that are not noun phrases — verbs and adjectives naming faces and gestures ("笑哭了",
"游泳"), interjections ("嘿嘿"), the single ideographs of the Japanese buttons ("可"), names led
by a numeral ("两颗心") — are said as emoji, the name quoted: "一个“笑哭了”表情" (their surface
form is the quoted name, so "有" the button is not found inside the template "图中有"). Clock
faces are "一个显示八点半的时钟"; prohibitions "一个禁止吸烟标志".
Accuracy measured on a sample: docs/longtail.md.
"""
from __future__ import annotations

import re

from .descriptions import Description, Mention

FRAMES = ("bare", "there", "picture", "relation", "copula", "row")
RELATIONS = {"left": "左边", "right": "右边", "above": "上面", "below": "下面", "beside": "旁边"}
COLORS = {"red": "红色", "orange": "橙色", "yellow": "黄色", "green": "绿色", "blue": "蓝色", "purple": "紫色",
          "pink": "粉色", "grey": "灰色", "white": "白色"}
SIZES = {"small": "小小的", "large": "大大的"}
DEFAULT_MEASURE_WORD = "个"


def _table(groups: dict[str, str]) -> dict[str, str]:
    return {suffix: word for word, suffixes in groups.items() for suffix in suffixes.split()}


# suffix -> measure word; the longest suffix of a name that is here decides
MEASURE_WORDS = _table({
    "只": "鸟 鸡 鸭 鸭子 鹅 鸽 鹰 鹦鹉 企鹅 孔雀 天鹅 猫 狗 犬 兔 兔子 鼠 老鼠 耗子 仓鼠 松鼠 猴 猴子 熊 熊猫 狮子 老虎 豹子 "
          "狐狸 袋鼠 考拉 獾 海狸 刺猬 浣熊 臭鼬 树懒 水獭 猫头鹰 火烈鸟 渡渡鸟 蝴蝶 帝王蝶 蜜蜂 蚂蚁 甲虫 瓢虫 蟋蟀 "
          "苍蝇 蚊子 蟑螂 蜘蛛 蝎子 蜗牛 蟹 虾 龙虾 乌贼 章鱼 水母 青蛙 龟 海豹 海豚 蝙蝠 羊 山羊 母羊 公羊 大猩猩 "
          "红毛猩猩 霸王龙 蜥蜴 蜥蜴类 手 脚 耳朵 眼睛 鞋 靴 凉鞋 风筝 拳击手套 泰迪熊 小鸡",
    "头": "牛 奶牛 公牛 水牛 猪 野猪 大象 河马 犀牛 驴 猛犸 鲸 鲸鱼 骆驼 鹿 美洲鸵 蒜",
    "条": "银河 鱼 河豚 蛇 龙 虫 毛毛虫 蠕虫 裤 短裤 牛仔裤 三角裤 裙 连衣裙 领带 围巾 链条 铁轨 丝带 腿 舌头 信息 "
          "鳄鱼 臂 索道 高速公路",
    "匹": "马 赛马 斑马 狼",
    "个": "头 人鱼 热狗 木马 笔尖 拳头 红绿灯 六芒星 星月 钢笔尖 梅花 麦克风 土豆 纸杯蛋糕 降落伞",
    "张": "脸 纸 卡 信用卡 身份证 票 入场券 床 地图 图 图表 光盘 软盘 嘴 网 花札 大小王 红中 收据 扁面包 烙饼 标签页 "
          "美元 欧元 英镑 日元 DVD 页面 X射线",
    "本": "书 书本 本 笔记本 线圈本 账本 日历",
    "封": "情书 来信 电子邮件",
    "辆": "车 汽车 公交车 警车 出租车 赛车 消防车 救护车 货车 自行车 摩托车 卡车 拖拉机 小巴 电车 轮椅 购物车",
    "列": "火车 列车 地铁 轻轨 单轨 空轨",
    "架": "飞机 直升机 竖琴 手风琴",
    "艘": "船 帆船 客轮 渡轮 快艇 摩托艇 独木舟 划艇",
    "把": "刀 剑 伞 椅子 钥匙 锁 斧头 锤子 扳手 螺丝刀 剪刀 铲 扫帚 镐 锯 吉他 小提琴 班卓琴 水枪 扇 匙 放大镜 "
          "直尺 三角尺 匕首",
    "朵": "花 云 玫瑰 郁金香 向日葵 风信子 芙蓉 蘑菇 浪花 火花",
    "束": "花束 烟花 焰火 稻子",
    "棵": "树 草 仙人掌 幼苗 植物 药草 绿叶蔬菜",
    "颗": "糖 星 星星 心 钻石 宝石 豆 炸弹 卫星 行星 陨石 彗星 樱桃 蓝莓 草莓 花生 栗子 橄榄 牙齿 骰子",
    "件": "衣 衫 恤 背心 外套 大褂 和服 纱丽 比基尼 服 装 礼物",
    "顶": "帽 帐篷 头盔 王冠 皇冠",
    "双": "袜子 筷子 芭蕾舞鞋 双手",
    "副": "眼镜 墨镜 护目镜 手套 耳机 刀叉",
    "对": "肺",
    "座": "山 桥 塔 城堡 建筑 教堂 寺 寺庙 清真寺 神社 克尔白 工厂 体育馆 喷泉 岛 灯塔 过山车 摩天轮 国家公园 "
          "自由女神像 奖杯",
    "家": "店 银行 酒店 医院 商场 电影院",
    "所": "学校",
    "栋": "房子 楼 别墅",
    "间": "小屋 卫生间 厕所 男厕 女厕",
    "片": "叶 枫叶 落叶 雪花 培根 沙漠 废墟 风光",
    "盏": "灯 灯笼 油灯",
    "台": "机 电脑 电视机 打印机 传真机 相机 取款机 摄影机 老虎机 寻呼机 收音机 放映机 摄像机 显微镜 望远镜",
    "部": "手机 电话",
    "根": "香蕉 胡萝卜 黄瓜 玉米 骨头 法式长棍面包 棒棒糖 羽毛 拐杖 盲杖 魔棒 缝合针 线 钓鱼竿 杆",
    "支": "笔 蜡笔 蜡烛 香烟 试管 注射器 长笛 小号 长号 萨克斯管 唇膏 温度计 飞镖",
    "块": "黄油 冰块 蛋糕 水果蛋糕 肉块 砖 石头 岩石 手表 皂 巧克力 芝士 饼干 米饼 木头 海绵 墓碑 标语牌 牌 拼图 磁铁 姜 "
          "滑板 滑雪板 排骨 肌肉",
    "枚": "金牌 银牌 铜牌 奖牌 军功章 徽章 硬币 戒指 图钉 别针 回形针 火箭",
    "面": "旗 镜子 盾牌 鼓",
    "幅": "画",
    "场": "雷阵雨 雾 台风 龙卷风 爆炸 山体滑坡 婚礼",
    "阵": "风 大风",
    "滴": "水滴 血滴 汗 汗滴",
    "团": "火焰 毛线 云团",
    "粒": "药丸",
    "轮": "月 满月 弯月 残月 上弦月 下弦月 蛾眉月 盈凸月 亏凸月 朔月 太阳",
    "杯": "啤酒 鸡尾酒 热饮 热茶 葡萄酒 清酒 奶茶 马黛茶 饮料",
    "碗": "米饭 面条",
    "份": "爆米花 咖喱饭 意粉 关东煮 盒饭 寿司 沙拉 薯条 刨冰 奶黄 报纸 报纸卷 文件 备忘录 乐谱",
    "串": "葡萄 团子 念珠",
    "节": "电池",
    "卷": "卷纸 卷轴",
    "盘": "录像带",
    "套": "螺母与螺栓 锤子与镐 锤子与扳手 弓和箭 餐具 钥匙和锁 沙发和灯",
    "名": "选手",
    "口": "棺材",
    "扇": "门 窗户",
    "道": "彩虹",
    "瓶": "蜂蜜",
})
# names that are not noun phrases (read from the whole inventory): said as emoji
EMOJI_NAMES = set("""
可 申 得 祝 割 无 这里 月 满 有 营 合 禁 指 秘 空 OK 睡着 航班降落 航班起飞 怒 生气 极度痛苦 冷汗 震惊 嘻嘻 心跳
生物危害 开花 开香槟 母乳喂养 心碎 建筑施工 给我打电话 露营 鼓掌 干杯 碰杯 打雷 下雨 下雪 困惑 困扰 施工 裂开 哭
货币兑换 失望 除 流口水 头晕 怒火中烧 无语 忍住泪水 好吃 吓死了 呕吐 有眼袋 晕头转向 郁闷 不说 受伤 感冒 睁眼捂嘴
吃惊 偷看 挑眉 翻白眼 傲慢 笑哭了 发烧 吐舌 沉默 害怕 有雾 双手合十 不满 啊 龇牙咧嘴 嘿嘿 哈哈 大笑 苦笑 斜眼笑 握手
非礼勿听 非礼勿视 非礼勿言 心中箭了 小鸡破壳 高压 脸发烧 缄默 滑冰 无穷大 输入拉丁字母 输入小写拉丁字母
输入大写拉丁字母 输入数字 输入符号 亲吻 亲亲 羞涩亲亲 微笑亲亲 风吹叶落 向左推 向右推 拇指左指 拇指右指 倒垃圾
放声大哭 电池电量不足 说谎 融化 赏月 乘 减 加 发财 手机关机 涂指甲油 恶心 冷漠 非饮用水 饮用水 出拳 张开双手 无新信件
有新信件 掌心向上托起 护照检查 沉思 痛苦 表演艺术 骑自行车 玩球 鞠躬 侧手翻 捂脸 皱眉 理发 按摩 抛接杂耍 举重 骑山地车
撅嘴 举手 耸肩 冲浪 游泳 捏手指 注册 松了口气 致敬 颤抖 睡着了 困 微微不满 呵呵 微笑 喜笑颜开 恶魔微笑 抱抱 羞涩微笑
得意 打喷嚏 闪亮 说话 泼溅 眯眼吐舌 好崇拜哦 阴 多云 晴转雨 晴偶有云 想一想 累 累死了 不高兴 举白旗 眨眼 眨眼吐舌 无线
头昏眼花 担心 写字 打呵欠 滑稽 闭嘴 摇滚 滑雪 挥手 辐射 竖中指 举起手 举双手 举起拳头 拇指向下 拇指向上 置顶 服务费
两颗心 一杯奶 一百分 一锅食物 双眼 连起来的两个回形针 手拉手的两个男人 手拉手的两个女人 手拉手的一男一女 多个音符
反手食指向下指 反手食指向左指 反手食指向右指 反手食指向上指 食指向上指 咬住嘴唇 城市黄昏 收邮件 尾气 版权 商标 花痴
脸红 寄存行李 笑得满地打滚 盐 提取行李 儿童过街 倾倒液体 人的拥抱
""".split())
CLOCK = re.compile(r"[一二两三四五六七八九十]+点半?")
SIGN = re.compile(r"禁止.*|18禁")

KINDS = ("np", "emoji", "clock", "sign")


def name_of(cldr: str) -> str:
    """The Chinese name of a CLDR short name: colons off, `_` as a space."""
    return cldr.strip(":").replace("_", " ")


def kind(name: str) -> str:
    """How the Chinese name enters a caption (module docstring)."""
    if CLOCK.fullmatch(name):
        return "clock"
    if SIGN.fullmatch(name):
        return "sign"
    return "emoji" if name in EMOJI_NAMES else "np"


def measure_word(name: str) -> str:
    """The measure word of a noun phrase: by the longest suffix of `name` in `MEASURE_WORDS`, else 个."""
    for start in range(len(name)):
        if name[start:] in MEASURE_WORDS:
            return MEASURE_WORDS[name[start:]]
    return DEFAULT_MEASURE_WORD


class Grammar:
    """Realises descriptions in Chinese over the concept names `names` (id -> Chinese name)."""

    lang = "zh"
    frames = FRAMES
    sizes = True
    backgrounds = True

    def __init__(self, names: dict[str, str]) -> None:
        self.names = dict(names)
        self.kinds = {cid: kind(name) for cid, name in self.names.items()}

    def concepts(self, d: Description) -> list[str]:
        """The concept ids a realisation of `d` names, in the order of the text (a relation puts its
        landmark first: "一只海豚左边的一个红苹果")."""
        return d.concepts[::-1] if d.frame == "relation" else d.concepts

    def forms(self, concept: str) -> list[str]:
        name = self.names[concept]
        return [f"“{name}”" if self.kinds[concept] == "emoji" else name]

    def mention(self, m: Mention) -> str:
        name, k = self.names[m.concept], self.kinds[m.concept]
        size = SIZES[m.size] if m.size else ""
        if k == "clock":
            return f"一个显示{name}的{size}时钟"
        if k == "sign":
            return f"一个{size}{name}标志"
        if k == "emoji":
            return f"一个{size}“{name}”表情"
        return f"一{measure_word(name)}{size}{name}"

    def realise(self, d: Description) -> str:
        parts = [self.mention(m) for m in d.mentions]
        listed = parts[0] if len(parts) == 1 else "、".join(parts[:-1]) + "和" + parts[-1]
        color = COLORS[d.background] if d.background else None
        if d.frame == "bare":
            return f"{color}背景上的{listed}" if color else listed
        if d.frame == "there":
            return f"{color}背景上有{listed}" if color else f"图中有{listed}"
        if d.frame == "picture":
            return f"一张{color}背景的图片，上面有{listed}" if color else f"一张图片，上面有{listed}"
        ground = f"在{color}背景上，" if color else ""
        if d.frame == "row":
            return f"{ground}从左到右依次是{listed}"
        rel = RELATIONS[d.relation]
        if d.frame == "relation":
            return f"{ground}{parts[1]}{rel}的{parts[0]}"
        if d.frame == "copula":
            return f"{ground}{parts[0]}在{parts[1]}的{rel}"
        raise ValueError(f"unknown frame {d.frame!r}")
